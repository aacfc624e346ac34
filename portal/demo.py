"""The demo's people (`manage.py demo_data`): users assigned to the demo pool's desktops and,
once the worker has provisioned it, a few of them logged on, so the helpdesk page has
somebody to find and help out of the box."""

from __future__ import annotations

from datetime import timedelta

from composer import endpoint_drivers
from composer.inventory import sync_vms
from composer.models import Operation
from composer.queue import queue
from pools.models import Desktop
from pools.states import DesktopState

# Assigned in desktop order; the first LOGGED_ON of them are logged on once provisioned.
USERS = [
    "alice.johnson",
    "bob.smith",
    "carol.diaz",
    "dave.jones",
    "erin.wong",
    "frank.muller",
    "grace.okafor",
    "henry.novak",
    "ines.silva",
    "jon.park",
]
LOGGED_ON = 3
# How often to look again while the pool is still being provisioned.
RECHECK = timedelta(seconds=5)


def assign_users(pool) -> None:
    for desktop, user in zip(pool.desktops.order_by("name"), USERS, strict=False):
        Desktop.objects.filter(pk=desktop.pk).update(assigned_user=user)


def log_on_when_provisioned(operation_id: int) -> str:
    """Job: once the pool's provisioning has ended, log the first users on (in the simulator,
    as they would log on to their desktops) and take their sessions into the portal. Until
    then it looks again every RECHECK (rq's scheduler runs it)."""
    operation = Operation.objects.select_related("pool__endpoint").get(pk=operation_id)
    if operation.is_active:
        queue().enqueue_in(RECHECK, log_on_when_provisioned, operation_id)
        return "pool still provisioning"
    if operation.pool is None:
        return "pool gone"
    sim = endpoint_drivers.for_endpoint(operation.pool.endpoint)
    logged_on = []
    for desktop in (
        operation.pool.desktops.filter(state=DesktopState.AVAILABLE)
        .exclude(assigned_user="")
        .order_by("name")[:LOGGED_ON]
    ):
        sim.start_session(desktop.name, desktop.assigned_user)
        logged_on.append(desktop.assigned_user)
    sync_vms(operation.pool.endpoint)  # the portal learns of them now, not at the next sync
    return f"logged on: {', '.join(logged_on) or 'nobody'}"
