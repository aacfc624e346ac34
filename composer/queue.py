"""Putting jobs on the RQ queue: after commit, with ids derived from our rows.

Every job is for a row that is already saved (an operation, a desktop's task, an endpoint
check), and the reconciler enqueues again any such row whose job is gone. So a job that
cannot be enqueued because Redis is unreachable is not lost: it is logged, noted for the
request that asked for it (portal.middleware.QueueOutageMiddleware tells the user), and
queued by the reconciler once Redis is back.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from contextlib import contextmanager
from datetime import datetime

import django_rq
import redis
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# Two queues. Every worker serves URGENT first (composer/worker.PortalWorker adds it to the
# queues it is given): the jobs of helpdesk-sized operations (Operation.urgent), so one
# user's refresh does not wait behind the jobs of a bulk provision.
DEFAULT = "default"
URGENT = "urgent"

# The jobs (composer/jobs.py), named by their paths: the jobs call the services and the
# dispatcher that enqueue them, not the reverse.
RUN_OPERATION = "composer.jobs.run_operation"
RUN_DESKTOP = "composer.jobs.run_desktop"
RUN_ENDPOINT_CHECK = "composer.jobs.run_endpoint_check"
# A webhook delivery (composer/webhooks/delivery.py): always on the default queue.
RUN_WEBHOOK_DELIVERY = "composer.webhooks.delivery.deliver"

# Job ids a request could not enqueue; None outside a request that collects them.
_unqueued: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "unqueued", default=None
)


def queue(name: str = DEFAULT):
    return django_rq.get_queue(name)


def quick_connection(timeout: float = 1.0) -> redis.Redis:
    """The queues' Redis with short timeouts, one client (and its connection pool) per
    process: for what runs often and must not hang on a stalled Redis (/healthz, /metrics,
    each step's timing). django-rq's queue() makes a new client, with a new connection, at
    every call, and waits as long as the socket does."""
    return _client(settings.RQ_QUEUES[DEFAULT]["URL"], timeout)


@functools.lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    # redis-py's pool notices a fork (the work horse) and opens new connections in it.
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def enqueue_on_commit(func, job_id: str, *args, queue_name: str = DEFAULT) -> None:
    """Enqueue once the current transaction commits, so a worker never sees a row that is not
    there yet, and a rolled-back request enqueues nothing."""

    def enqueue():
        queue(queue_name).enqueue(
            func, *args, job_id=job_id, result_ttl=3600, failure_ttl=7 * 24 * 3600
        )

    transaction.on_commit(lambda: _try(enqueue, job_id))


def enqueue_at_on_commit(when: datetime, func, job_id: str, *args) -> None:
    """Enqueue for `when` (rq's scheduler starts it then) once the transaction commits."""
    transaction.on_commit(
        lambda: _try(lambda: queue().enqueue_at(when, func, *args, job_id=job_id), job_id)
    )


def _try(enqueue, job_id: str) -> None:
    try:
        enqueue()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning(
            "job %s not queued, Redis unreachable (%s): the reconciler queues it when "
            "Redis is back",
            job_id,
            exc,
        )
        unqueued = _unqueued.get()
        if unqueued is not None:
            unqueued.append(job_id)


@contextmanager
def collecting_unqueued():
    """Within it, the ids of jobs that could not be enqueued gather in the yielded list."""
    token = _unqueued.set([])
    try:
        yield _unqueued.get()
    finally:
        _unqueued.reset(token)
