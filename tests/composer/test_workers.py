"""Real worker processes: global limits across 4 workers, and surviving a killed worker.

These start `manage.py rqworker` subprocesses against the test database and the test Redis,
as production runs them, and the simulator with a small step time so work overlaps.
"""

import os
import signal

import pytest

from composer import reconciler, services
from composer.models import DesktopTask, Operation
from pools.models import Desktop, HypervisorEndpoint, PersistentDisk, Pool
from pools.states import BUSY, DesktopState
from tests.worker_processes import start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
TaskStatus = DesktopTask.Status


@pytest.fixture
def big_pool(users, lab, run_jobs):
    def make(size):
        services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="Big",
                naming_pattern="BIG-{n:fixed=3}",
                size=size,
                datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
                image_version=lab.v1,
                overcommit=4,
                persistent_disk_mb=GIB,
            ),
        )
        run_jobs()  # provisioned in-process, with no step time
        pool = Pool.objects.get(name="Big")
        assert pool.desktops.filter(state=DesktopState.AVAILABLE).count() == size
        return pool

    return make


def test_four_workers_never_exceed_the_global_limit(users, lab, big_pool):
    pool = big_pool(16)
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(max_maintenance=3)
    lab.sim.reset_peak()
    operation = services.start_operation(users["admin"], pool, "refresh")

    workers = [start_worker(step_seconds=0.05) for _ in range(4)]
    try:
        samples = []

        def done():
            samples.append(
                DesktopTask.objects.filter(operation=operation, status=TaskStatus.RUNNING).count()
            )
            operation.refresh_from_db()
            return not operation.is_active

        wait_for(done)
    finally:
        for worker in workers:
            stop(worker)

    assert operation.status == Operation.Status.SUCCEEDED
    assert max(samples) <= 3
    # The simulator counts overlapping hypervisor calls across all processes.
    assert 2 <= lab.sim.peak_in_flight() <= 3
    assert operation.tasks.filter(status=TaskStatus.SUCCEEDED).count() == 16


def kill_runner(operation):
    """SIGKILL the work horse running a desktop of the operation (found from its row)."""
    task = operation.tasks.filter(status=TaskStatus.RUNNING).exclude(runner="").first()
    os.kill(int(task.runner.rpartition(":")[2]), signal.SIGKILL)


@pytest.mark.parametrize("crash", ["host", "worker process only"])
def test_killed_worker_mid_recompose_is_survived(users, lab, big_pool, monkeypatch, crash):
    """A host crash kills the worker and its work horse; a worker killed alone leaves rq's
    work horse (its own process group) to finish the desktop it was on. Either way the
    reconciler and a new worker finish the operation, with every disk where it was."""
    pool = big_pool(30)
    disks_before = sorted(PersistentDisk.objects.values_list("pk", "name", "desktop__name"))
    operation = services.plan_operation(
        users["admin"], pool, "recompose", extra={"image_version": lab.v2.pk}
    )
    services.approve(users["admin"], operation)

    worker = start_worker(step_seconds=0.2)
    try:
        # Let it get well into the work: some desktops done, one half-way through its steps
        # (past "maintenance", so the desktop is busy: the runner records a step before it
        # runs it).
        wait_for(
            lambda: (
                operation.tasks.filter(status=TaskStatus.SUCCEEDED).count() >= 2
                and operation.tasks.filter(status=TaskStatus.RUNNING)
                .exclude(step__in=["", "wait_for_logoff", "maintenance"])
                .exists()
            )
        )
        if crash == "host":
            kill_runner(operation)
    finally:
        stop(worker, signal.SIGKILL)
    interrupted = list(
        operation.tasks.filter(status=TaskStatus.RUNNING).values_list("desktop_name", "step")
    )
    if crash == "host":
        # Nothing runs any more, so the interrupted desktops stay mid-maintenance. (When only
        # the worker dies, its surviving horse may finish the desktop at any moment: no
        # snapshot of the rows would be stable enough to assert on.)
        assert interrupted, "the worker should have died mid-desktop"
        assert Desktop.objects.filter(
            state__in=[DesktopState.MAINTENANCE, DesktopState.CUSTOMIZING]
        ).exists()

    # The reconciler (its every-minute run, here every second and without the settling
    # delay) and a new worker, as after a restart.
    monkeypatch.setattr(reconciler, "SETTLE", reconciler.timedelta(0))
    resumed = reconciler.reconcile()["desktops_resumed"]
    if crash == "host":
        assert resumed >= 1
    worker = start_worker(step_seconds=0)
    try:

        def finished():
            reconciler.reconcile()
            operation.refresh_from_db()
            return not operation.is_active

        wait_for(finished, interval=1)
    finally:
        stop(worker)

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    for desktop in Desktop.objects.filter(pool=pool):
        assert desktop.state == DesktopState.AVAILABLE, (desktop.name, desktop.reason)
        assert desktop.image_version_id == lab.v2.pk
        vm = lab.sim.get_vm(desktop.name)
        assert vm.disks == (f"{desktop.name}-pd",) and vm.power == "on"
    assert not Desktop.objects.filter(state__in=BUSY).exists()
    assert sorted(PersistentDisk.objects.values_list("pk", "name", "desktop__name")) == disks_before
    assert {d.name for d in lab.sim.inventory().disks} == {name for _, name, _ in disks_before}
    if crash == "host":
        # The interrupted desktops were handed out again and carried on from their step.
        for name, step in interrupted:
            task = operation.tasks.get(desktop_name=name)
            assert task.attempts >= 2, (name, step)
