"""What Redis says about the machinery, for /healthz and /metrics (portal/health.py,
portal/metrics.py): live workers, rq's scheduler, the reconciler's last run, the queues and
the step timings.

Two pipelined round trips whatever the number of workers or jobs: the first reads the keys
that name things (the worker set, the scheduler's lock, the queues' heads) along with the
counts, the second the hashes they name. The liveness rules are composer/liveness.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils import timezone
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import utcparse
from rq.worker_registration import REDIS_WORKER_KEYS

from composer import step_timings
from composer.liveness import answering, scheduler_answering
from composer.queue import DEFAULT, URGENT
from composer.reconciler import FINISHED_AT_KEY

QUEUES = (DEFAULT, URGENT)
WORKER_FIELDS = ("hostname", "pid", "state", "last_heartbeat")
SCHEDULER_FIELDS = ("hostname", "pid", "last_heartbeat")


@dataclass
class QueueState:
    length: int
    oldest_enqueued_at: datetime | None  # of the job at its head; None when empty


@dataclass
class RuntimeState:
    live_workers: int
    scheduler_alive: bool
    reconciled_at: float | None  # Unix time the reconciler last finished; None: never
    queues: dict[str, QueueState] = field(default_factory=dict)
    step_timings: dict = field(default_factory=dict)  # step_timings.parse()


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _time(value: bytes | None) -> datetime | None:
    if not value:
        return None
    moment = utcparse(value.decode())
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


def read(conn, with_step_timings: bool = False) -> RuntimeState:
    """Raises redis' errors: the caller decides what an unreachable Redis means."""
    now = timezone.now()
    with conn.pipeline(transaction=False) as pipe:
        pipe.smembers(REDIS_WORKER_KEYS)
        # Jobs enqueued for later go to the default queue (composer/queue.enqueue_at_on_commit):
        # the scheduler that holds its lock is the one that matters.
        pipe.get(RQScheduler.get_locking_key(DEFAULT))
        pipe.get(FINISHED_AT_KEY)
        for name in QUEUES:
            key = Queue.redis_queue_namespace_prefix + name
            pipe.llen(key)
            pipe.lindex(key, 0)  # rq pushes on the right: the head waited longest
        if with_step_timings:
            step_timings.read_raw(pipe)
        worker_keys, scheduler_name, finished_at, *rest = pipe.execute()
    heads = {}
    queue_lengths = {}
    for index, name in enumerate(QUEUES):
        queue_lengths[name] = rest[2 * index]
        heads[name] = _text(rest[2 * index + 1])
    timings = step_timings.parse(rest[-1]) if with_step_timings else {}

    workers = sorted(_text(key) for key in worker_keys)
    with conn.pipeline(transaction=False) as pipe:
        for key in workers:
            pipe.hmget(key, WORKER_FIELDS)
        if scheduler_name:
            pipe.hmget(SCHEDULER_KEY_TEMPLATE % _text(scheduler_name), SCHEDULER_FIELDS)
        for name in QUEUES:
            if heads[name]:
                pipe.hget(Job.key_for(heads[name]), "enqueued_at")
        answers = pipe.execute()

    live = 0
    for hostname, pid, state, beat in answers[: len(workers)]:
        if state is None:
            continue  # its hash expired: it died without saying so
        beat_at = _time(beat)
        age = now - beat_at if beat_at else None
        if answering(_text(hostname), int(pid) if pid else None, _text(state), age):
            live += 1
    rest = answers[len(workers) :]
    scheduler_alive = False
    if scheduler_name:
        hostname, pid, beat = rest.pop(0)
        scheduler_alive = beat is not None and scheduler_answering(
            _text(hostname), int(pid) if pid else None, _time(beat), now
        )
    queues = {}
    for name in QUEUES:
        enqueued_at = _time(rest.pop(0)) if heads[name] else None
        queues[name] = QueueState(queue_lengths[name], enqueued_at)
    return RuntimeState(
        live_workers=live,
        scheduler_alive=scheduler_alive,
        reconciled_at=float(finished_at) if finished_at else None,
        queues=queues,
        step_timings=timings,
    )
