"""Putting jobs on the RQ queue: after commit, with ids derived from our rows."""

from __future__ import annotations

import django_rq
from django.db import transaction

QUEUE = "default"


def queue():
    return django_rq.get_queue(QUEUE)


def enqueue_on_commit(func, job_id: str, *args) -> None:
    """Enqueue once the current transaction commits, so a worker never sees a row that is not
    there yet, and a rolled-back request enqueues nothing."""

    def enqueue():
        queue().enqueue(func, *args, job_id=job_id, result_ttl=3600, failure_ttl=7 * 24 * 3600)

    transaction.on_commit(enqueue)
