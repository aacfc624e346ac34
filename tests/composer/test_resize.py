"""Resizing a pool (composer.services.resize_pool): growing places and provisions new
desktops as creating a pool does; shrinking deletes only desktops safe to remove, keeping
their persistent disks; real jobs on the simulated hypervisor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditEvent
from composer import naming, services
from composer.capacity import DoesNotFit
from composer.models import Operation
from composer.services import OperationRefused, surplus
from pools.models import Desktop, PersistentDisk, Pool
from pools.states import DesktopState, transition
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

S = DesktopState


def built_pool(users, lab, run_jobs, size: int, pattern: str = "RSZ-{n}", **spec) -> Pool:
    pool = factories.requested_pool(users["admin"], lab, "Resize", pattern, size, **spec)
    run_jobs()
    assert set(pool.desktops.values_list("state", flat=True)) == {S.AVAILABLE}
    return pool


def names(pool: Pool) -> set[str]:
    return set(pool.desktops.values_list("name", flat=True))


def test_grow_places_new_desktops_and_provisions_them(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 3, "GRO-{n:fixed=2}")
    # A desktop of another pool holds the next name: the new ones go around it.
    other = factories.pool("Other", lab.v1, [lab.ds["ds-a"]], naming_pattern="OTH-{n}")
    factories.desktop(other, "GRO-04", lab.ds["ds-a"], state=S.AVAILABLE)

    operation = services.resize_pool(users["admin"], pool, 6)

    pool.refresh_from_db()
    assert pool.size == 6
    assert operation.kind == "provision" and operation.status == Operation.Status.QUEUED
    new = {t.desktop_name for t in operation.tasks.all()}
    assert new == {"GRO-05", "GRO-06", "GRO-07"}
    # Placed on the pool's selected datastores only.
    assert set(pool.desktops.values_list("datastore__name", flat=True)) <= {"ds-a", "ds-b"}
    event = AuditEvent.objects.get(action="resize_pool")
    assert event.outcome == "requested" and event.operation_id == operation.pk
    assert event.parameters == {"old_size": 3, "desktops": 3, "new_size": 6}

    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    assert pool.desktops.count() == 6
    assert set(pool.desktops.values_list("state", flat=True)) == {S.AVAILABLE}
    clones = {vm.name for vm in lab.sim.inventory().vms if vm.kind == "clone"}
    assert new <= clones


def test_grow_honours_each_datastores_own_overcommit(users, lab, run_jobs):
    # ds-tiny (25 GiB) at None holds no 40 GiB parent at all; ds-a at 1x holds 5 clones.
    pool = factories.pool(
        "Tight",
        lab.v1,
        [(lab.ds["ds-a"], {"overcommit": 1}), (lab.ds["ds-tiny"], {"overcommit": 1})],
        naming_pattern="TGT-{n}",
    )

    with pytest.raises(DoesNotFit):
        services.resize_pool(users["admin"], pool, 6)
    operation = services.resize_pool(users["admin"], pool, 5)

    assert operation.tasks.count() == 5
    assert set(pool.desktops.values_list("datastore__name", flat=True)) == {"ds-a"}


def test_grow_beyond_the_datastores_is_refused_and_changes_nothing(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 2)

    with pytest.raises(DoesNotFit, match="do not fit"):
        services.resize_pool(users["admin"], pool, 500)

    pool.refresh_from_db()
    assert (pool.size, pool.desktops.count()) == (2, 2)
    assert not AuditEvent.objects.filter(action="resize_pool").exists()
    assert Operation.objects.filter(pool=pool).count() == 1  # its creation's only


def test_grow_past_what_the_pattern_can_name_is_a_naming_error(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 2, "NAM-{n:fixed=1}")

    with pytest.raises(naming.NamingError):
        services.resize_pool(users["admin"], pool, 10)

    assert pool.desktops.count() == 2


def test_shrink_deletes_only_safe_desktops_and_keeps_persistent_disks(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 6, persistent_disk_mb=1024)
    by_name = {d.name: d for d in pool.desktops.all()}
    Desktop.objects.filter(pk=by_name["RSZ-1"].pk).update(assigned_user="alice")
    connected = by_name["RSZ-2"]
    connected.session_user = "bob"
    connected.save(update_fields=["session_user"])
    transition(connected, S.CONNECTED)
    transition(by_name["RSZ-3"], S.ERROR, "customization failed")
    disks_before = set(PersistentDisk.objects.values_list("name", flat=True))
    assert len(disks_before) == 6

    operation = services.resize_pool(users["admin"], pool, 3)

    # The broken one first, then the newest ready ones; never the assigned or logged-on.
    chosen = {t.desktop_name for t in operation.tasks.all()}
    assert chosen == {"RSZ-3", "RSZ-6", "RSZ-5"}
    assert operation.kind == "delete" and operation.options == {"keep_disks": True}
    pool.refresh_from_db()
    assert pool.size == 3

    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    assert names(pool) == {"RSZ-1", "RSZ-2", "RSZ-4"}
    # Every persistent disk is still there; those of the deleted desktops detached.
    assert set(PersistentDisk.objects.values_list("name", flat=True)) == disks_before
    kept = PersistentDisk.objects.filter(name__in=[f"RSZ-{n}-pd" for n in (3, 5, 6)])
    assert kept.count() == 3 and not kept.filter(desktop__isnull=False).exists()


def test_shrink_refused_when_too_few_desktops_are_safe(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 3)
    by_name = {d.name: d for d in pool.desktops.all()}
    Desktop.objects.filter(pk=by_name["RSZ-1"].pk).update(assigned_user="alice")
    refresh = services.start_operation(users["admin"], pool, "refresh", [by_name["RSZ-3"]])

    with pytest.raises(OperationRefused, match="Only 1 of the 2 desktops"):
        services.resize_pool(users["admin"], pool, 1)

    pool.refresh_from_db()
    assert (pool.size, pool.desktops.count()) == (3, 3)
    # Its creation's and the refresh: no delete was asked for.
    assert set(Operation.objects.filter(pool=pool).values_list("kind", flat=True)) == {
        "provision",
        refresh.kind,
    }
    # One less is possible: the one neither assigned nor busy goes.
    operation = services.resize_pool(users["admin"], pool, 2)
    assert [t.desktop_name for t in operation.tasks.all()] == ["RSZ-2"]


def test_desktops_a_started_delete_removes_are_not_counted(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 4)
    leaving = pool.desktops.get(name="RSZ-4")
    services.start_operation(users["admin"], pool, "delete", [leaving], extra={"keep_disks": True})

    operation = services.resize_pool(users["admin"], pool, 2)

    assert [t.desktop_name for t in operation.tasks.all()] == ["RSZ-3"]
    run_jobs()
    assert names(pool) == {"RSZ-1", "RSZ-2"}


def test_same_size_does_nothing(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 2)

    assert services.resize_pool(users["admin"], pool, 2) is None

    assert not AuditEvent.objects.filter(action="resize_pool").exists()
    assert Operation.objects.filter(pool=pool).count() == 1


def test_only_administrators_resize_and_a_denial_is_audited(users, lab, run_jobs):
    pool = built_pool(users, lab, run_jobs, 2)

    for role in ("helpdesk", "auditor"):
        with pytest.raises(PermissionDenied):
            services.resize_pool(users[role], pool, 3)

    assert AuditEvent.objects.filter(action="resize_pool", outcome="denied").count() == 2
    assert pool.desktops.count() == 2


def test_unknown_sessions_keep_powered_on_desktops(lab):
    """Where the hypervisor cannot tell sessions (vSphere), a desktop that may be running has
    a user unless its agent said otherwise lately (pools.sessions): only powered-off or
    missing ones go, and those whose agent reported nobody."""
    pool = factories.pool("Sess", lab.v1, [lab.ds["ds-a"]])
    ds = lab.ds["ds-a"]
    on = factories.desktop(pool, "SES-1", ds, state=S.AVAILABLE)
    off = factories.desktop(pool, "SES-2", ds, state=S.PROVISIONED)
    broken = factories.desktop(pool, "SES-3", ds, state=S.ERROR)
    gone = factories.desktop(pool, "SES-4", ds, state=S.AVAILABLE, missing=True)
    busy = factories.desktop(pool, "SES-5", ds, state=S.MAINTENANCE)
    desktops = [on, off, broken, gone, busy]

    assert surplus.removable(desktops, {}, reports_sessions=False) == [gone, off]
    assert "nobody can tell" in surplus.unsafe_reason(on, {}, False)
    assert surplus.removable(desktops, {}, reports_sessions=True) == [gone, broken, off, on]
    assert surplus.removable(desktops, {off.pk: 7}, reports_sessions=True) == [gone, broken, on]

    # Their agents reported lately: nobody on `on` nor on `broken`.
    now = timezone.now()
    for desktop in (on, broken):
        desktop.session_reported_at = now
    assert surplus.removable(desktops, {}, reports_sessions=False) == [gone, broken, off, on]
    on.session_user = "carol"
    assert surplus.unsafe_reason(on, {}, False) == "a user is logged on"
    on.session_reported_at = now - timedelta(days=1)  # an old report says nothing
    assert "nobody can tell" in surplus.unsafe_reason(on, {}, False)
    assert "busy in operation #7" in surplus.unsafe_reason(off, {off.pk: 7}, True)
