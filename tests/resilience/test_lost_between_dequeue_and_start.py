"""A worker killed right after it took a desktop's job off the queue, before it started it,
leaves the job "queued" in its intermediate queue, where nobody runs it. The reconciler hands
the desktop out again instead of trusting "queued" (issue 9, item 1)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from composer import services
from composer.models import DesktopTask, Operation
from composer.queue import queue
from composer.reconciler import reconcile
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_lost_between_dequeue_and_start_is_handed_out_again(users, make_pool, run_jobs):
    pool = make_pool("Lost", "LS-{n}", 2)
    run_jobs()
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs(max_jobs=1)  # the operation's own job: it hands both desktops to workers
    task = operation.tasks.get(desktop_name="LS-1")
    assert task.status == DesktopTask.Status.DISPATCHED
    q = queue()
    # What rq does on dequeue (LMOVE to the worker's intermediate queue), then the worker dies.
    intermediate = f"{q.key}:intermediate"
    assert q.connection.lrem(q.key, 1, task.job_id) == 1
    q.connection.rpush(intermediate, task.job_id)
    assert q.fetch_job(task.job_id).get_status() == "queued"  # what misled the reconciler
    DesktopTask.objects.filter(pk=task.pk).update(
        dispatched_at=timezone.now() - timedelta(minutes=5)
    )

    report = reconcile()
    assert report["desktops_resumed"] == 1
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    task.refresh_from_db()
    assert task.status == DesktopTask.Status.SUCCEEDED and task.attempts == 2
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
