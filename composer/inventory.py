"""Bringing what the hypervisor reports into the inventory tables."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from composer import endpoint_drivers
from composer.drivers.base import DriverError
from pools.models import Datastore, Desktop, HypervisorEndpoint, Replica
from pools.states import DesktopState, transition


def sync_datastores(endpoint: HypervisorEndpoint) -> list[Datastore]:
    """Create or update a Datastore row for every datastore the endpoint reports, and mark
    the ones it no longer reports as gone (never deleted: desktops and history point at
    them)."""
    rows = []
    for info in endpoint_drivers.for_endpoint(endpoint).datastores():
        row, _ = Datastore.objects.update_or_create(
            endpoint=endpoint,
            name=info.name,
            defaults={
                "capacity_mb": info.capacity_mb,
                "free_mb": info.free_mb,
                "ref": info.ref,
                "gone": False,
                "updated_at": timezone.now(),
            },
        )
        rows.append(row)
    Datastore.objects.filter(endpoint=endpoint, gone=False).exclude(
        pk__in=[r.pk for r in rows]
    ).update(gone=True, updated_at=timezone.now())
    return rows


def sync_endpoint(endpoint: HypervisorEndpoint) -> dict:
    """Datastores, drift, orphans and sessions of one endpoint, with the outcome kept on the
    endpoint row for the Hypervisors page. Raises DriverError when the hypervisor cannot be
    read (after recording it)."""
    try:
        datastores = sync_datastores(endpoint)
        report = sync_vms(endpoint)
    except DriverError as exc:
        HypervisorEndpoint.objects.filter(pk=endpoint.pk).update(sync_error=str(exc))
        raise
    report["datastores"] = len(datastores)
    report["gone"] = Datastore.objects.filter(endpoint=endpoint, gone=True).count()
    HypervisorEndpoint.objects.filter(pk=endpoint.pk).update(
        synced_at=timezone.now(), sync_error="", orphans=report["orphans"]
    )
    return report


def follows_session(state: str, session_user: str) -> str | None:
    """The state a desktop takes from its session, or None to leave it: ready desktops
    follow their sessions; busy ones are left to their operation."""
    if session_user and state in (DesktopState.AVAILABLE, DesktopState.DISCONNECTED):
        return DesktopState.CONNECTED
    if not session_user and state in (DesktopState.CONNECTED, DesktopState.DISCONNECTED):
        return DesktopState.AVAILABLE
    return None


def sync_vms(endpoint: HypervisorEndpoint) -> dict:
    """Flag desktops whose VM vanished as missing (and clear the flag when it is back), list
    the portal's VMs that no desktop or replica owns as orphans, and take sessions from
    hypervisors that report them."""
    driver = endpoint_drivers.for_endpoint(endpoint)
    found = driver.inventory().vms
    vms = {vm.name: vm for vm in found}
    desktops = Desktop.objects.filter(pool__endpoint=endpoint).exclude(driver_ref="")
    missing = 0
    for desktop in desktops:
        vm = vms.get(desktop.name)
        missing += vm is None
        changed = []
        if desktop.missing != (vm is None):
            desktop.missing = vm is None
            changed.append("missing")
        sessions = vm is not None and driver.reports_sessions
        if sessions and desktop.session_user != vm.session_user:
            desktop.session_user = vm.session_user
            changed.append("session_user")
        if changed:
            updated = Desktop.objects.filter(pk=desktop.pk).update(
                **{field: getattr(desktop, field) for field in changed}, updated_at=timezone.now()
            )
            if not updated:
                continue  # deleted (by an operation) since it was read: nothing to flag
        if not sessions:
            continue
        if follows_session(desktop.state, vm.session_user) is None:
            continue
        # The row read above may be stale: a worker may have taken the desktop into an
        # operation since. Decide again on the locked row, so that is never overwritten.
        with transaction.atomic():
            current = Desktop.objects.select_for_update().filter(pk=desktop.pk).first()
            new_state = current and follows_session(current.state, vm.session_user)
            if new_state:
                transition(current, new_state)
    # Rows exist before their VMs are cloned, so a VM being created is never an orphan.
    known = set(Desktop.objects.filter(pool__endpoint=endpoint).values_list("name", flat=True))
    known |= set(
        Replica.objects.filter(datastore__endpoint=endpoint).values_list("name", flat=True)
    )
    orphans = sorted(vm.name for vm in found if vm.kind != "parent" and vm.name not in known)
    return {"missing": missing, "orphans": orphans}
