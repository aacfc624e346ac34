"""Maintenance operations end to end: services -> real RQ jobs through Redis -> simulator.

Each test builds a provisioned pool with persistent disks, runs an operation with a burst
worker, and checks the result on both sides: the inventory rows and the simulator's own view.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditEvent
from composer import dispatch, services
from composer.models import DesktopTask, Operation
from composer.reconciler import reconcile
from composer.services import OperationRefused, Options
from pools.models import Desktop, PersistentDisk, Pool, PoolDatastore, Replica
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status
TaskStatus = DesktopTask.Status


@pytest.fixture
def pool(users, lab, run_jobs):
    """A provisioned pool of 6 desktops with 1 GiB persistent disks on ds-a and ds-b."""
    operation = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Ops",
            naming_pattern="OPS-{n:fixed=2}",
            size=6,
            datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
            image_version=lab.v1,
            overcommit=4,
            persistent_disk_mb=GIB,
        ),
    )
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    return Pool.objects.get(name="Ops")


def desktops(pool, *names):
    found = Desktop.objects.filter(pool=pool, name__in=names).order_by("name")
    assert found.count() == len(names)
    return list(found)


def disk_identities(pool):
    """Every persistent disk: (row id, name, owner) — what must survive any operation."""
    return sorted(
        PersistentDisk.objects.filter(pool=pool).values_list("pk", "name", "desktop__name")
    )


def sim_disks(lab):
    return {d.name: d for d in lab.sim.inventory().disks}


def ops_on(lab, method):
    return sorted(target for name, target in lab.sim.call_log() if name == method)


def test_refresh_reverts_only_the_chosen_desktops_and_keeps_their_disks(users, lab, pool, run_jobs):
    a, b = desktops(pool, "OPS-01", "OPS-02")
    for desktop in (a, b):
        lab.sim.simulate_usage(desktop.name, 700)  # the user wrote 700 MiB since the checkpoint
    checkpoint_delta = a.delta_mb
    before = disk_identities(pool)

    operation = services.start_operation(users["admin"], pool, "refresh", [a, b])
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert ops_on(lab, "revert") == ["OPS-01", "OPS-02"]
    for desktop in (a, b):
        desktop.refresh_from_db()
        assert desktop.state == DesktopState.AVAILABLE
        assert desktop.delta_mb == checkpoint_delta
        assert lab.sim.get_vm(desktop.name).delta_mb == checkpoint_delta
        assert lab.sim.get_vm(desktop.name).disks == (f"{desktop.name}-pd",)
    assert disk_identities(pool) == before


def test_recompose_to_a_new_version_keeps_names_and_disks_and_replaces_replicas(
    users, lab, pool, run_jobs
):
    before = disk_identities(pool)
    names = sorted(pool.desktops.values_list("name", flat=True))
    operation = services.plan_operation(
        users["admin"],
        pool,
        "recompose",
        extra={"image_version": lab.v2.pk, "set_default": True},
    )
    assert operation.status == Status.DRAFT
    assert {row["to"] for row in operation.plan["desktops"]} == {str(lab.v2)}
    assert {r["datastore"] for r in operation.plan["replicas"]} == {
        d.datastore.name for d in pool.desktops.all()
    }
    services.approve(users["admin"], operation)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    pool.refresh_from_db()
    assert pool.image_version == lab.v2
    assert sorted(pool.desktops.values_list("name", flat=True)) == names
    for desktop in pool.desktops.all():
        vm = lab.sim.get_vm(desktop.name)
        assert desktop.image_version == lab.v2
        assert desktop.state == DesktopState.AVAILABLE
        assert vm.replica == desktop.replica.name == f"replica-{lab.v2.pk}-{desktop.datastore.name}"
        assert vm.checkpoint == desktop.checkpoint
        assert vm.disks == (f"{desktop.name}-pd",)
    assert disk_identities(pool) == before
    # Nothing reads from the old version any more: its replicas are gone, row and VM.
    assert not Replica.objects.filter(image_version=lab.v1).exists()
    assert not [vm for vm in lab.sim.inventory().vms if vm.name.startswith(f"replica-{lab.v1.pk}-")]


def test_recompose_waits_for_a_logged_on_user_then_finishes(users, lab, pool, run_jobs):
    lab.sim.start_session("OPS-03", "alice")
    reconcile()  # the portal learns about the session
    assert Desktop.objects.get(name="OPS-03").state == DesktopState.CONNECTED
    before = disk_identities(pool)
    operation = services.plan_operation(
        users["admin"], pool, "recompose", extra={"image_version": lab.v2.pk}
    )
    assert operation.plan["sessions"] == [{"desktop": "OPS-03", "user": "alice"}]
    services.approve(users["admin"], operation)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.RUNNING
    waiting = DesktopTask.objects.get(operation=operation, desktop_name="OPS-03")
    assert waiting.status == TaskStatus.WAITING
    assert "alice" in waiting.error
    assert Desktop.objects.get(name="OPS-03").image_version == lab.v1  # untouched so far
    others = pool.desktops.exclude(name="OPS-03")
    assert {d.image_version_id for d in others} == {lab.v2.pk}

    lab.sim.end_session("OPS-03")
    DesktopTask.objects.filter(pk=waiting.pk).update(retry_at=timezone.now())
    dispatch.dispatch(pool.endpoint_id)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert Desktop.objects.get(name="OPS-03").image_version == lab.v2
    assert disk_identities(pool) == before


def test_forced_logoff_warns_then_logs_off_after_the_grace_period(users, lab, pool, run_jobs):
    (desktop,) = desktops(pool, "OPS-04")
    lab.sim.start_session("OPS-04", "bob")
    options = Options(logoff_policy="force", warning_message="Back in 5 minutes", grace_seconds=60)
    operation = services.start_operation(users["admin"], pool, "refresh", [desktop], options)
    run_jobs()
    task = DesktopTask.objects.get(operation=operation)
    assert task.status == TaskStatus.WAITING  # warned; the grace period runs
    assert lab.sim.last_message("OPS-04") == "Back in 5 minutes"
    assert lab.sim.get_vm("OPS-04").session_user == "bob"

    assert task.retry_at - timezone.now() > timedelta(seconds=50)
    # The grace period ends.
    DesktopTask.objects.filter(pk=task.pk).update(retry_at=timezone.now())
    dispatch.dispatch(pool.endpoint_id)
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert ("log_off", "OPS-04") in lab.sim.call_log()
    assert lab.sim.get_vm("OPS-04").session_user == ""


def test_forcing_logoff_halves_the_maintenance_limit(users, lab, pool, run_jobs):
    Pool.objects.filter(pk=pool.pk).update(max_concurrent_maintenance=4)
    operation = services.start_operation(
        users["admin"], pool, "refresh", options=Options(logoff_policy="force")
    )
    run_jobs(max_jobs=1)  # the operation job: dispatches what the limit allows
    assert operation.tasks.filter(status__in=DesktopTask.IN_FLIGHT).count() == 2
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED


def test_min_ready_desktops_caps_maintenance(users, lab, pool, run_jobs):
    Pool.objects.filter(pk=pool.pk).update(min_ready_desktops=5)
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs(max_jobs=1)
    # 6 ready, 5 must stay ready: one desktop at a time.
    assert operation.tasks.filter(status__in=DesktopTask.IN_FLIGHT).count() == 1
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert operation.tasks.filter(status=TaskStatus.SUCCEEDED).count() == 6


def test_rebalance_vacates_a_deselected_datastore_as_previewed(users, lab, pool, run_jobs):
    PoolDatastore.objects.filter(pool=pool, datastore=lab.ds["ds-a"]).update(selected=False)
    leaving = sorted(pool.desktops.filter(datastore=lab.ds["ds-a"]).values_list("name", flat=True))
    assert leaving
    before = disk_identities(pool)

    operation = services.plan_operation(users["admin"], pool, "rebalance")
    plan = operation.plan
    assert sorted(m["desktop"] for m in plan["moves"]) == leaving
    assert {m["to"] for m in plan["moves"]} == {"ds-b"}
    preview_b = plan["usage"]["ds-b"]["real_after_mb"]
    services.approve(users["admin"], operation)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert not pool.desktops.filter(datastore=lab.ds["ds-a"]).exists()
    vms = {vm.name: vm for vm in lab.sim.inventory().vms}
    disks = sim_disks(lab)
    for name in leaving:
        assert vms[name].datastore == "ds-b"
        assert vms[name].replica == f"replica-{lab.v1.pk}-ds-b"
        assert disks[f"{name}-pd"].datastore == "ds-b"
        assert disks[f"{name}-pd"].attached_to == name
    assert disk_identities(pool) == before
    # The receiving datastore ends exactly where the preview said.
    ds_b = next(ds for ds in lab.sim.datastores() if ds.name == "ds-b")
    assert ds_b.capacity_mb - ds_b.free_mb == preview_b
    # ds-a is empty: no clone, no disk, and its replica went with the last desktop.
    assert not [vm for vm in vms.values() if vm.datastore == "ds-a"]


def test_rebalance_refuses_when_the_inventory_changed_since_approval(users, lab, pool, run_jobs):
    PoolDatastore.objects.filter(pool=pool, datastore=lab.ds["ds-a"]).update(selected=False)
    operation = services.plan_operation(users["admin"], pool, "rebalance")
    assert operation.plan["moves"]
    # Behind the portal's back, ds-b fills up.
    free = next(ds.free_mb for ds in lab.sim.datastores() if ds.name == "ds-b")
    lab.sim.create_disk("someone-elses-disk", "ds-b", free - 100)
    services.approve(users["admin"], operation)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.REFUSED
    assert "ds-b" in operation.error and "changed" in operation.error
    assert pool.desktops.filter(datastore=lab.ds["ds-a"]).count() == len(operation.plan["moves"])
    assert not ops_on(lab, "move_vm")


def test_delete_desktops_keeping_disks_leaves_them_listed_and_detached(users, lab, pool, run_jobs):
    a, b = desktops(pool, "OPS-01", "OPS-02")
    services.start_operation(users["admin"], pool, "delete", [a, b], extra={"keep_disks": True})
    run_jobs()

    assert not Desktop.objects.filter(name__in=["OPS-01", "OPS-02"]).exists()
    kept = PersistentDisk.objects.filter(name__in=["OPS-01-pd", "OPS-02-pd"])
    assert kept.count() == 2 and all(d.desktop is None for d in kept)
    disks = sim_disks(lab)
    assert disks["OPS-01-pd"].attached_to == "" and disks["OPS-02-pd"].attached_to == ""
    vm_names = {vm.name for vm in lab.sim.inventory().vms}
    assert "OPS-01" not in vm_names and "OPS-03" in vm_names


def test_delete_pool_with_disks_removes_everything(users, lab, pool, run_jobs):
    operation = services.start_operation(
        users["admin"], pool, "delete", extra={"keep_disks": False}
    )
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert not Pool.objects.filter(name="Ops").exists()
    assert operation.pool is None and operation.pool_name == "Ops"
    assert not PersistentDisk.objects.exists()
    inventory = lab.sim.inventory()
    assert not inventory.vms or all(vm.kind == "parent" for vm in inventory.vms)
    assert not inventory.disks
    assert not Replica.objects.exists()


def test_power_and_logoff(users, lab, pool, run_jobs):
    (desktop,) = desktops(pool, "OPS-05")
    services.start_operation(users["admin"], pool, "power", [desktop], extra={"action": "shutdown"})
    run_jobs()
    desktop.refresh_from_db()
    assert desktop.state == DesktopState.PROVISIONED
    assert lab.sim.get_vm("OPS-05").power == "off"

    services.start_operation(users["admin"], pool, "power", [desktop], extra={"action": "start"})
    run_jobs()
    desktop.refresh_from_db()
    assert desktop.state == DesktopState.AVAILABLE

    lab.sim.start_session("OPS-05", "carol")
    reconcile()
    desktop.refresh_from_db()
    assert (desktop.state, desktop.session_user) == (DesktopState.CONNECTED, "carol")
    services.start_operation(users["helpdesk"], pool, "logoff", [desktop])
    run_jobs()
    desktop.refresh_from_db()
    assert (desktop.state, desktop.session_user) == (DesktopState.AVAILABLE, "")
    assert lab.sim.get_vm("OPS-05").session_user == ""


def test_one_pending_schedule_per_desktop_and_now_replaces_it(users, lab, pool, run_jobs):
    a, b = desktops(pool, "OPS-01", "OPS-02")
    later = timezone.now() + timedelta(hours=2)
    scheduled = services.start_operation(
        users["admin"], pool, "refresh", [a, b], Options(start_at=later)
    )
    assert scheduled.status == Status.SCHEDULED
    with pytest.raises(OperationRefused, match="OPS-01"):
        services.start_operation(users["admin"], pool, "refresh", [a], Options(start_at=later))

    now = services.start_operation(users["admin"], pool, "refresh", [a, b])
    scheduled.refresh_from_db()
    assert scheduled.status == Status.CANCELLED
    assert set(scheduled.tasks.values_list("status", flat=True)) == {TaskStatus.HALTED}
    run_jobs()
    now.refresh_from_db()
    assert now.status == Status.SUCCEEDED


def test_scheduled_operation_starts_when_due(users, lab, pool, run_jobs):
    (a,) = desktops(pool, "OPS-01")
    operation = services.start_operation(
        users["admin"], pool, "refresh", [a], Options(start_at=timezone.now() + timedelta(hours=1))
    )
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SCHEDULED  # not yet
    Operation.objects.filter(pk=operation.pk).update(scheduled_for=timezone.now())
    assert reconcile()["operations_restarted"] == 0  # the scheduler's job is still there
    # rq's scheduler moves due jobs to the queue; here we drop it and let the reconciler act.
    from composer.queue import queue

    queue().connection.delete(f"rq:job:{operation.job_id}")
    assert reconcile()["operations_restarted"] == 1
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED


def test_cancel_halts_desktops_not_reached(users, lab, pool, run_jobs):
    Pool.objects.filter(pk=pool.pk).update(max_concurrent_maintenance=2)
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs(max_jobs=2)  # prepared, two desktops dispatched, the first one refreshed
    services.cancel(users["admin"], operation)
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLING  # one desktop is still handed to a worker
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLED
    # The dispatched one had not started: it was not reached either.
    halted = operation.tasks.filter(status=TaskStatus.HALTED)
    assert halted.count() == 5
    assert all(t.desktop.task_halted and t.desktop.state == DesktopState.AVAILABLE for t in halted)
    assert ops_on(lab, "revert") == ["OPS-01"]
    assert AuditEvent.objects.filter(operation=operation, outcome="cancelled").exists()


def test_pause_and_resume(users, lab, pool, run_jobs):
    Pool.objects.filter(pk=pool.pk).update(max_concurrent_maintenance=2)
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs(max_jobs=1)
    services.pause(users["admin"], operation)
    run_jobs()  # the two dispatched desktops go back to pending; nothing else starts
    operation.refresh_from_db()
    assert operation.status == Status.PAUSED
    assert operation.tasks.filter(status=TaskStatus.PENDING).count() == 6
    assert not ops_on(lab, "revert")
    services.resume(users["admin"], operation)
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED


def test_stop_at_first_error_halts_the_rest(users, lab, pool, run_jobs):
    Pool.objects.filter(pk=pool.pk).update(max_concurrent_maintenance=1)
    lab.sim.fail_desktop("OPS-02", "revert")
    operation = services.start_operation(
        users["admin"], pool, "refresh", options=Options(stop_on_error=True)
    )
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.PARTIALLY_FAILED
    statuses = dict(operation.tasks.values_list("desktop_name", "status"))
    assert statuses["OPS-01"] == TaskStatus.SUCCEEDED
    assert statuses["OPS-02"] == TaskStatus.FAILED
    assert {statuses[f"OPS-0{n}"] for n in range(3, 7)} == {TaskStatus.HALTED}
    failed = Desktop.objects.get(name="OPS-02")
    assert failed.state == DesktopState.ERROR and "revert" in failed.reason


def test_error_desktop_is_repaired_by_a_refresh(users, lab, pool, run_jobs):
    lab.sim.fail_desktop("OPS-02", "revert")
    services.start_operation(users["admin"], pool, "refresh", desktops(pool, "OPS-02"))
    run_jobs()
    assert Desktop.objects.get(name="OPS-02").state == DesktopState.ERROR
    lab.sim.clear_failures()
    services.start_operation(users["admin"], pool, "refresh", desktops(pool, "OPS-02"))
    run_jobs()
    desktop = Desktop.objects.get(name="OPS-02")
    assert (desktop.state, desktop.reason) == (DesktopState.AVAILABLE, "")


def test_helpdesk_may_refresh_one_desktop_but_not_the_pool(users, lab, pool, run_jobs):

    with pytest.raises(PermissionDenied):
        services.start_operation(users["helpdesk"], pool, "refresh")
    with pytest.raises(PermissionDenied):
        services.plan_operation(users["helpdesk"], pool, "rebalance")
    with pytest.raises(PermissionDenied):
        services.start_operation(users["auditor"], pool, "refresh", desktops(pool, "OPS-01"))
    assert not Operation.objects.exclude(kind="provision").exists()
    operation = services.start_operation(
        users["helpdesk"], pool, "refresh", desktops(pool, "OPS-01")
    )
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED


def test_reconciler_ends_a_desktop_stuck_in_maintenance_and_flags_missing_vms(users, lab, pool):
    stuck = Desktop.objects.get(name="OPS-01")
    Desktop.objects.filter(pk=stuck.pk).update(state=DesktopState.MAINTENANCE)
    lab.sim.vanish("OPS-02")
    report = reconcile()
    assert report["desktops_ended"] == 1
    stuck.refresh_from_db()
    assert stuck.state == DesktopState.ERROR and "Interrupted" in stuck.reason
    # Nobody asked for it: the audit log says the portal did it, and why.
    (event,) = AuditEvent.objects.filter(action="desktop_interrupted")
    assert (event.actor_name, event.role) == ("(system)", "system")
    assert (event.target_name, event.message) == ("OPS-01", stuck.reason)
    assert event.parameters == {"state": "Maintenance"}
    assert Desktop.objects.get(name="OPS-02").missing
    assert not Desktop.objects.get(name="OPS-03").missing


def test_deleting_a_desktop_whose_vm_vanished_cleans_up_the_rest(users, lab, pool, run_jobs):
    lab.sim.vanish("OPS-06")
    reconcile()
    (gone,) = desktops(pool, "OPS-06")
    assert gone.missing
    services.start_operation(users["admin"], pool, "delete", [gone], extra={"keep_disks": True})
    run_jobs()
    assert not Desktop.objects.filter(name="OPS-06").exists()
    disk = PersistentDisk.objects.get(name="OPS-06-pd")
    assert disk.desktop is None  # kept, detached, listed
    assert sim_disks(lab)["OPS-06-pd"].attached_to == ""


def test_a_kept_disk_can_be_attached_to_another_desktop_later(users, lab, pool, run_jobs):
    (old,) = desktops(pool, "OPS-01")
    services.start_operation(users["admin"], pool, "delete", [old], extra={"keep_disks": True})
    run_jobs()
    kept = PersistentDisk.objects.get(name="OPS-01-pd")
    assert kept.desktop is None
    # A desktop on the other datastore, if there is one, shows the disk moving with it.
    other = pool.desktops.exclude(datastore=kept.datastore).first() or pool.desktops.first()
    services.attach_disk(users["admin"], kept, other)
    run_jobs()
    kept.refresh_from_db()
    assert kept.desktop == other and kept.datastore == other.datastore
    disk = sim_disks(lab)["OPS-01-pd"]
    assert (disk.attached_to, disk.datastore) == (other.name, other.datastore.name)
    assert set(lab.sim.get_vm(other.name).disks) == {f"{other.name}-pd", "OPS-01-pd"}
    with pytest.raises(OperationRefused):
        services.attach_disk(users["admin"], kept, pool.desktops.exclude(pk=other.pk).first())


def test_a_refused_cancel_is_audited_and_changes_nothing(users, pool):
    """Helpdesk controls only operations of kinds it may run on one desktop. A denial is
    recorded apart from the refused work: the operation stays as it was, the audit log keeps
    the attempt."""
    operation = services.start_operation(
        users["admin"],
        pool,
        "delete",
        desktops(pool, "OPS-01"),
        options=Options(start_at=timezone.now() + timedelta(1)),
    )
    for control in (services.cancel, services.pause, services.discard):
        with pytest.raises(PermissionDenied):
            control(users["helpdesk"], operation)
    operation.refresh_from_db()
    assert operation.status == Status.SCHEDULED
    denied = AuditEvent.objects.filter(outcome="denied", actor_name="hal", operation=operation)
    assert sorted(denied.values_list("action", flat=True)) == [
        "cancel_operation",
        "discard_operation",
        "pause_operation",
    ]
