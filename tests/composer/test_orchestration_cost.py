"""What running desktops through the job queue costs, and that cutting it kept the reconciler
right (issue 9, "Orchestration cost"; bench/orchestration.py measures the same at scale).

A desktop job carries on with the next desktop it dispatches instead of enqueuing a job for
it (composer/jobs.py), so an operation costs a few RQ jobs, not one per desktop: the test
counts every command the queue's Redis runs (MONITOR on its database), the simulator being on
a Redis of its own. Counts, never times.
"""

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from rq import Worker
from rq.job import JobStatus

from bench.orchestration import Monitor, classify
from composer import jobs, reconciler, services
from composer.models import DesktopTask, Operation
from composer.queue import queue
from pools.models import HypervisorEndpoint, Pool
from portal import embedded_redis
from tests.worker_processes import start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TaskStatus = DesktopTask.Status
TARGET = 40  # Redis calls on the queue per desktop (issue 9)


@pytest.fixture
def simulator_apart(settings):
    """The simulator's inventory on a Redis of its own (before `lab` fills it), so that the
    queue's Redis carries only the orchestration's calls. Worker processes inherit it."""
    folder = Path(tempfile.mkdtemp(prefix="sim-"))
    server = embedded_redis.start(folder / "sim.sock", folder, persist=False)
    settings.SIMULATOR_REDIS_URL = f"unix://{folder / 'sim.sock'}"
    yield settings.SIMULATOR_REDIS_URL
    embedded_redis.stop(server)
    shutil.rmtree(folder, ignore_errors=True)


def new_pool(users, lab, size, name="Cost"):
    return services.create_pool(
        users["admin"],
        services.PoolSpec(
            name=name,
            naming_pattern=f"{name[:3].upper()}-{{n:fixed=3}}",
            size=size,
            datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )


def ended(operation):
    operation.refresh_from_db()
    return not operation.is_active


def test_an_operation_costs_the_queue_under_40_redis_calls_per_desktop(simulator_apart, users, lab):
    assert lab.sim.conn.connection_pool.connection_kwargs["path"] in simulator_apart
    size = 30
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(
        max_provisioning=4, max_maintenance=4
    )
    worker = start_worker()
    try:
        wait_for(lambda: Worker.count(connection=queue().connection))
        counted = {}
        with Monitor(django_settings.REDIS_URL) as monitor:
            monitor.take()
            operation = new_pool(users, lab, size)
            wait_for(lambda: ended(operation))
            time.sleep(1)  # the last job's own bookkeeping, after the rows say it ended
            counted["provision"] = (operation, monitor.take())

            pool = Pool.objects.get(name="Cost")
            operation = services.start_operation(users["admin"], pool, "refresh")
            wait_for(lambda: ended(operation))
            time.sleep(1)
            counted["refresh"] = (operation, monitor.take())
    finally:
        stop(worker)

    for name, (operation, calls) in counted.items():
        assert operation.status == Operation.Status.SUCCEEDED, name
        by_source = {
            source: sum(commands.values())
            for source, commands in classify(calls).items()
            if commands
        }
        per_desktop = len(calls) / size
        assert per_desktop < TARGET, f"{name}: {per_desktop:.1f} calls per desktop: {by_source}"
        # Not one job per desktop: rq's own bookkeeping of a job alone is some 70 calls.
        # (A worker of two queues, urgent and default, pops with BLPOP or LPOP.)
        dequeued = sum(1 for cmd, _ in calls if cmd in ("blmove", "blpop", "lpop"))
        assert dequeued < size / 2, f"{name}: {dequeued} jobs for {size} desktops"


def test_a_desktop_job_carries_on_with_the_next_desktops(settings, users, lab, run_jobs):
    settings.DESKTOP_CARRY_ON_SECONDS = 60
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(max_provisioning=2)
    operation = new_pool(users, lab, 6)
    run_jobs(max_jobs=1)  # the operation's job: two desktops handed out, a job each
    first, second = operation.tasks.filter(status=TaskStatus.DISPATCHED).order_by("pk")
    assert queue().job_ids == [first.job_id, second.job_id]

    run_jobs(max_jobs=1)  # the first desktop's job, which then does the next ones itself
    carried = operation.tasks.filter(status=TaskStatus.SUCCEEDED)
    assert carried.count() == 5
    assert set(carried.values_list("rq_job_id", flat=True)) == {first.job_id}
    second.refresh_from_db()
    assert second.status == TaskStatus.DISPATCHED  # its own job is still queued
    assert queue().job_ids == [second.job_id]  # and no job was enqueued for the others

    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED


def test_a_job_stops_carrying_on_when_its_worker_is_asked_to_stop(
    settings, monkeypatch, redis_conn
):
    settings.DESKTOP_CARRY_ON_SECONDS = 60
    job = queue().enqueue(time.time, job_id="carrying")
    job.worker_name = "w-stopping"
    monkeypatch.setattr("rq.get_current_job", lambda *args, **kwargs: job)
    carry_on = jobs._CarryOn()
    assert carry_on.allowed()
    # What rq's worker writes when a warm shutdown comes in the middle of a job.
    redis_conn.hset("rq:worker:w-stopping", "shutdown_requested_date", "now")
    assert not carry_on.allowed()

    settings.DESKTOP_CARRY_ON_SECONDS = 0
    assert not jobs._CarryOn().allowed()
    monkeypatch.setattr("rq.get_current_job", lambda *args, **kwargs: None)
    settings.DESKTOP_CARRY_ON_SECONDS = 60
    assert not jobs._CarryOn().allowed()  # not in an rq job: one desktop, as asked


def test_the_reconciler_asks_rq_about_the_job_that_carries_a_desktop(monkeypatch, users, lab):
    """On another host the reconciler cannot see the work horse: it asks rq whether the job
    running the desktop, which may be the job of a desktop before it, and its worker live."""
    monkeypatch.setattr(reconciler, "SETTLE", timedelta(0))
    operation = new_pool(users, lab, 2)
    task = operation.tasks.order_by("pk").first()
    q = queue()
    carrier = q.enqueue(time.time, job_id="operation-0-desktop-0-1")
    elsewhere = Worker([q], connection=q.connection, name="w-elsewhere")
    elsewhere.register_birth()
    carrier.set_status(JobStatus.STARTED)
    carrier.worker_name = elsewhere.name
    carrier.save()
    DesktopTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.RUNNING,
        attempts=1,
        dispatched_at=timezone.now() - timedelta(minutes=5),
        runner="another-host:4242",
        rq_job_id=carrier.id,
    )
    Operation.objects.filter(pk=operation.pk).update(status=Operation.Status.RUNNING)

    assert reconciler.reconcile()["desktops_resumed"] == 0  # its job runs on a live worker

    elsewhere.register_death()
    q.connection.delete(elsewhere.key)  # the host is gone, and its worker with it
    assert reconciler.reconcile()["desktops_resumed"] == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING  # handed out again at the next dispatch
