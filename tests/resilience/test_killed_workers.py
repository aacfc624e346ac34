"""Workers SIGKILLed at seeded random moments of every kind of operation (issue 9).

Each trial runs one operation on a real worker process, kills it (the whole host: worker and
work horse; or the worker process alone, leaving its horse to finish the desktop it holds)
after a seeded number of hypervisor calls, then lets the reconciler and a new worker carry
on, as after a restart. Whatever the moment, within 2 minutes:
- the operation succeeds and no desktop is left busy;
- every persistent disk exists exactly once, attached to its desktop (or detached, for the
  desktops deleted keeping their disks), on the hypervisor as in the database;
- every desktop has exactly one VM, and no VM of ours is left without its desktop.
The moment between a job's dequeue and its start has its own deterministic test
(test_lost_between_dequeue_and_start.py): a random kill rarely lands there.
"""

import os
import random
import signal

import pytest

from composer import reconciler, services
from composer.models import Operation
from pools.models import Desktop, PersistentDisk, PoolDatastore
from pools.states import BUSY, DesktopState
from tests import factories
from tests.worker_processes import errors, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
KINDS = ["provision", "refresh", "recompose", "rebalance", "delete keeping disks"]
TRIALS = 10  # two per kind
SIZE = 6


def make_pool(users, lab):
    return factories.requested_pool(
        users["admin"], lab, "Killed", "KW-{n}", SIZE, persistent_disk_mb=GIB
    )


def start(kind, users, lab, pool, rng) -> tuple[Operation, set[str]]:
    """Start the operation; returns it and the desktops it deletes."""
    admin = users["admin"]
    if kind == "provision":
        return pool.operations.get(kind="provision"), set()
    if kind == "refresh":
        return services.start_operation(admin, pool, "refresh"), set()
    if kind == "recompose":
        operation = services.plan_operation(
            admin, pool, "recompose", extra={"image_version": lab.v2.pk}
        )
        return services.approve(admin, operation), set()
    if kind == "rebalance":
        PoolDatastore.objects.filter(pool=pool, datastore=lab.ds["ds-a"]).update(selected=False)
        operation = services.plan_operation(admin, pool, "rebalance")
        assert operation.plan["moves"]
        return services.approve(admin, operation), set()
    doomed = rng.sample(list(pool.desktops.order_by("name")), 3)
    operation = services.start_operation(admin, pool, "delete", doomed, extra={"keep_disks": True})
    return operation, {d.name for d in doomed}


@pytest.mark.parametrize("seed", range(TRIALS))
def test_a_worker_killed_at_a_random_moment_is_survived(seed, users, lab, run_jobs, monkeypatch):
    rng = random.Random(seed)
    kind = KINDS[seed % len(KINDS)]
    whole_host = rng.random() < 0.5
    pool = make_pool(users, lab)
    if kind != "provision":
        run_jobs()  # provisioned in this process; the trial is about the next operation
    operation, deleted = start(kind, users, lab, pool, rng)
    calls_before = len(lab.sim.call_log())
    kill_after = rng.randint(1, 2 * SIZE)  # every kind makes more calls than that

    worker = start_worker(step_seconds=0.05)
    try:
        wait_for(
            lambda: (
                len(lab.sim.call_log()) >= calls_before + kill_after
                or not Operation.objects.get(pk=operation.pk).is_active
            ),
            timeout=120,
        )
    finally:
        if whole_host:
            stop(worker, signal.SIGKILL)  # the process group: worker and work horse
        else:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
    operation.refresh_from_db()
    assert operation.is_active, "the kill came after the end: the trial would prove nothing"

    # After a restart: the reconciler (every minute; here at once, without the settling
    # delay) and a new worker.
    monkeypatch.setattr(reconciler, "SETTLE", reconciler.timedelta(0))
    worker = start_worker(step_seconds=0)
    try:

        def ended():
            reconciler.reconcile()
            operation.refresh_from_db()
            return not operation.is_active

        wait_for(ended, timeout=120, interval=0.5)
    finally:
        stop(worker)

    where = f"seed {seed}: {kind}, killed after {kill_after} calls, whole host {whole_host}"
    assert operation.status == Operation.Status.SUCCEEDED, f"{where}: {errors(operation)}"
    desktops = {d.name: d for d in Desktop.objects.filter(pool=pool)}
    assert not [n for n, d in desktops.items() if d.state in BUSY], where
    assert all(d.state == DesktopState.AVAILABLE for d in desktops.values()), where
    assert not deleted & desktops.keys(), where

    inventory = lab.sim.inventory()
    ours = [vm for vm in inventory.vms if vm.kind == "clone"]
    assert sorted(vm.name for vm in ours) == sorted(desktops), where
    on_hypervisor = {disk.name: disk for disk in inventory.disks}
    in_database = {disk.name: disk for disk in PersistentDisk.objects.select_related("desktop")}
    assert sorted(on_hypervisor) == sorted(in_database), where
    assert len(in_database) == SIZE, where  # none dropped, none made twice
    for name, disk in in_database.items():
        if disk.desktop is None:
            assert name.removesuffix("-pd") in deleted, (where, name)
            assert on_hypervisor[name].attached_to == "", (where, name)
        else:
            assert on_hypervisor[name].attached_to == disk.desktop.name, (where, name)
            assert lab.sim.get_vm(disk.desktop.name).disks == (name,), (where, name)
