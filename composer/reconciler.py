"""The reconciler: nothing stays stuck.

Runs every minute (rq cron, composer/cron.py) and on demand. It is idempotent, so running it
twice, or on two hosts at once, does no harm. In order:
1. operations whose start job is gone (scheduled and due, queued, or running but not yet
   prepared) are enqueued again;
2. desktops handed to a worker that died (the job is gone, or its worker is) are handed out
   again, and carry on from the step they recorded;
3. running operations dispatch waiting desktops and end when every desktop has finished;
4. a desktop left busy (Provisioning, Customizing, Maintenance, Deleting) by no live
   operation goes to Error with the reason, so an administrator can repair it;
5. the inventory is compared with the hypervisor (composer/inventory.py): vanished VMs are
   flagged "missing", unknown VMs with the portal's marker listed as orphans, sessions
   brought up to date.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import redis
from django.db import transaction
from django.utils import timezone

from audit.log import Outcome, record
from composer import dispatch, endpoint_checks, endpoint_drivers, inventory, lifecycle
from composer.drivers.base import DriverError
from composer.liveness import job_alive, task_alive
from composer.models import DesktopTask, Operation
from composer.queue import RUN_OPERATION, queue
from composer.services.authorization import system_actor
from pools.models import Desktop, HypervisorEndpoint
from pools.states import BUSY, DesktopState, transition

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = DesktopTask.Status

# A job enqueued on commit may take a moment to appear; do not act on anything younger.
SETTLE = timedelta(seconds=30)

# When a run last finished (Unix time, in the queue's Redis): /healthz says the reconciler is
# late when it is old, /metrics shows it (composer/runtime_state.py).
FINISHED_AT_KEY = "portal:reconciler:finished_at"


@endpoint_drivers.logs_out
def reconcile() -> dict:
    now = timezone.now()
    report = {"operations_restarted": 0, "desktops_resumed": 0, "desktops_ended": 0}
    conn = queue().connection

    # 1. Operations whose start job is gone.
    due = Operation.objects.filter(status=Status.SCHEDULED, scheduled_for__lte=now)
    queued = Operation.objects.filter(status=Status.QUEUED, requested_at__lte=now - SETTLE)
    unprepared = Operation.objects.filter(
        status=Status.RUNNING, prepared_at__isnull=True, started_at__lte=now - SETTLE
    )
    for operation in [*due, *queued, *unprepared]:
        if not job_alive(operation.job_id, conn):
            queue(operation.queue_name).enqueue(
                RUN_OPERATION, operation.pk, job_id=operation.job_id
            )
            report["operations_restarted"] += 1

    # 2. Desktops whose worker died.
    stale = DesktopTask.objects.filter(
        status__in=DesktopTask.IN_FLIGHT, dispatched_at__lte=now - SETTLE
    )
    for task in stale:
        if task_alive(task, conn):
            continue
        with transaction.atomic():
            updated = DesktopTask.objects.filter(
                pk=task.pk, status=task.status, attempts=task.attempts
            ).update(status=TaskStatus.PENDING)
        if updated:
            log.warning(
                "desktop %s: worker lost at step %r, resuming", task.desktop_name, task.step
            )
            report["desktops_resumed"] += 1

    # 3. Keep running operations moving, and end the ones that are done.
    endpoints = set(
        Operation.objects.filter(status__in=[Status.RUNNING, Status.CANCELLING]).values_list(
            "pool__endpoint_id", flat=True
        )
    )
    for endpoint_id in endpoints - {None}:
        dispatch.dispatch(endpoint_id)
    for operation_id in Operation.objects.filter(
        status__in=[Status.RUNNING, Status.CANCELLING]
    ).values_list("pk", flat=True):
        lifecycle.finish_if_done(operation_id)

    # 4. Busy desktops that no live operation holds; connection tests and syncs whose job
    # was lost.
    report["desktops_ended"] = end_orphaned_desktops()
    report["checks_given_up"] = endpoint_checks.give_up_lost(now - SETTLE)

    # 5. Drift, orphans and sessions.
    for endpoint in HypervisorEndpoint.objects.all():
        try:
            inventory.sync_endpoint(endpoint)
        except DriverError as exc:
            log.warning("inventory of %s not read: %s", endpoint, exc)
    _stamp_finished(conn)
    return report


def _stamp_finished(conn) -> None:
    try:
        conn.set(FINISHED_AT_KEY, repr(time.time()))
    except redis.exceptions.RedisError as exc:
        # The run did its work; only the health check will find it late.
        log.warning("reconciler: finish time not recorded, Redis unreachable (%s)", exc)


def end_orphaned_desktops() -> int:
    """Busy desktops that no live operation holds go to Error with the reason, recorded in
    the audit log as the system actor's doing (nobody asked for it)."""
    held = DesktopTask.objects.held().values("desktop_id")
    ended = 0
    system = None
    for desktop in Desktop.objects.filter(state__in=BUSY).exclude(pk__in=held):
        with transaction.atomic():
            desktop = Desktop.objects.select_for_update().get(pk=desktop.pk)
            if desktop.state not in BUSY:
                continue
            last = desktop.tasks.select_related("operation").order_by("-pk").first()
            where = (
                f"operation #{last.operation_id} ({last.operation.get_status_display()}) "
                f"ended while it was at step {last.step or 'start'}"
                if last
                else "no operation holds it"
            )
            reason = f"Interrupted: {where}. Refresh, recompose or delete it to recover."
            was = desktop.get_state_display()
            transition(desktop, DesktopState.ERROR, reason=reason)
            system = system or system_actor()
            record(
                actor=system,
                action="desktop_interrupted",
                outcome=Outcome.SUCCEEDED,
                target=desktop,
                operation=last.operation if last else None,
                parameters={"state": was},
                message=reason,
            )
            ended += 1
    return ended
