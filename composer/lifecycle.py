"""Changes of an operation's and its desktops' progress rows, each under a row lock.

Jobs (jobs.py), the dispatcher and the reconciler call these; nothing else writes the
status of an Operation or an DesktopTask once it is queued.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from audit.log import record
from composer import log_context, replicas, webhooks
from composer.models import DesktopTask, Operation
from pools.models import Desktop, Pool
from pools.states import ALLOWED, DesktopState, transition

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = DesktopTask.Status


def fail_task(task: DesktopTask, message: str) -> None:
    """The desktop's part failed: the task says why, and the desktop is in Error with it."""
    with transaction.atomic():
        # Fenced like every write of a running desktop: a superseded attempt changes nothing.
        # (A pending desktop fails before any attempt when its replica cannot be made.)
        rows = (
            DesktopTask.objects.filter(pk=task.pk, status=TaskStatus.PENDING)
            if task.status == TaskStatus.PENDING
            else _owned(task)
        )
        owned = rows.update(
            status=TaskStatus.FAILED, error=message[:2000], finished_at=timezone.now()
        )
        if not owned:
            return
        log.warning(
            "desktop %s failed: %s", task.desktop_name, message, extra=log_context.of_task(task)
        )
        webhooks.emit(
            webhooks.DESKTOP_FAILED,
            task.operation_id,
            desktop=task.desktop_name,
            step=task.step,
            error=message[:2000],
        )
        desktop = Desktop.objects.select_for_update().filter(pk=task.desktop_id).first()
        if desktop is None:
            return
        if desktop.state == DesktopState.ERROR:
            desktop.reason = message
            desktop.save(update_fields=["reason", "updated_at"])
        elif DesktopState.ERROR in ALLOWED.get(desktop.state, frozenset()):
            transition(desktop, DesktopState.ERROR, reason=message)
        # A desktop that was never touched (still ready, e.g. a refused wait) keeps its state.


def _owned(task: DesktopTask):
    """The task's row, as long as this attempt still runs it."""
    return DesktopTask.objects.filter(pk=task.pk, attempts=task.attempts, status=TaskStatus.RUNNING)


def succeed_task(task: DesktopTask) -> None:
    # No savepoint when a desktop job calls it inside its dispatch's transaction.
    with transaction.atomic(savepoint=False):
        if _owned(task).update(status=TaskStatus.SUCCEEDED, error="", finished_at=timezone.now()):
            Desktop.objects.filter(pk=task.desktop_id).update(task_halted=False)
            log.info("desktop %s succeeded", task.desktop_name, extra=log_context.of_task(task))


def skip_task(task: DesktopTask, why: str) -> None:
    """Nothing to do any more (the desktop was deleted while the task was queued)."""
    if _owned(task).update(status=TaskStatus.SKIPPED, error=why, finished_at=timezone.now()):
        log.info("desktop %s skipped: %s", task.desktop_name, why, extra=log_context.of_task(task))


def park_task(task: DesktopTask, retry_at, why: str, **fields) -> None:
    """A user is logged on, or the hypervisor does not answer: free the slot and look again
    at retry_at. (Logged at DEBUG: a desktop whose user stays logged on is looked at again
    every 30 s, which at thousands of desktops would flood the log; the operation's page
    shows why each one waits.)"""
    if _owned(task).update(status=TaskStatus.WAITING, retry_at=retry_at, error=why, **fields):
        log.debug("desktop %s waits: %s", task.desktop_name, why, extra=log_context.of_task(task))


def halt_pending(operation: Operation, reason: str) -> int:
    """Desktops not reached yet stay as they are, marked "task halted". Returns how many."""
    with transaction.atomic():
        waiting = operation.tasks.select_for_update().filter(
            status__in=[TaskStatus.PENDING, TaskStatus.WAITING]
        )
        desktop_ids = list(waiting.values_list("desktop_id", flat=True))
        count = waiting.update(status=TaskStatus.HALTED, error=reason, finished_at=timezone.now())
        Desktop.objects.filter(pk__in=desktop_ids).update(task_halted=True)
    if count:  # one line for them all: there may be thousands
        log.info(
            "operation %s: %s desktops halted: %s",
            operation.pk,
            count,
            reason,
            extra={"operation_id": operation.pk},
        )
    return count


def refuse(operation_id: int, message: str) -> None:
    """The frozen plan no longer holds: end the operation, touching no desktop."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        operation.tasks.filter(status=TaskStatus.PENDING).update(
            status=TaskStatus.SKIPPED, error="plan refused", finished_at=timezone.now()
        )
        operation.status, operation.error = Status.REFUSED, message
        operation.finished_at = timezone.now()
        operation.save(update_fields=["status", "error", "finished_at"])
        record(
            actor=operation.requested_by,
            action=operation.kind,
            outcome="refused",
            target=operation.audit_target(),
            operation=operation,
            message=message,
        )
        webhooks.emit(webhooks.FINISHED, operation, outcome=operation.status, error=message)
    log.warning(
        "operation %s refused: %s", operation_id, message, extra={"operation_id": operation_id}
    )


def finish_if_done(operation_id: int) -> bool:
    """End the operation once every desktop in it has finished. Safe to call from every
    desktop job: the row lock and the status check let exactly one of them finish it."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        if operation.status not in (Status.RUNNING, Status.CANCELLING):
            return False
        if operation.prepared_at is None:
            return False
        counts = dict(operation.tasks.values_list("status").annotate(n=Count("*")).order_by())
        if any(counts.get(s) for s in DesktopTask.UNFINISHED):
            return False
        failed = counts.get(TaskStatus.FAILED, 0)
        succeeded = counts.get(TaskStatus.SUCCEEDED, 0)
        if operation.status == Status.CANCELLING:
            operation.status = Status.CANCELLED
        elif failed and succeeded:
            operation.status = Status.PARTIALLY_FAILED
        elif failed:
            operation.status = Status.FAILED
        else:
            operation.status = Status.SUCCEEDED
        operation.finished_at = timezone.now()
        operation.save(update_fields=["status", "finished_at"])
        desktops = {
            "succeeded": succeeded,
            "failed": failed,
            "halted": counts.get(TaskStatus.HALTED, 0),
            "skipped": counts.get(TaskStatus.SKIPPED, 0),
        }
        record(
            actor=operation.requested_by,
            action=operation.kind,
            outcome=operation.status,
            target=operation.audit_target(),
            operation=operation,
            parameters=desktops,
            message=operation.error,
        )
        webhooks.emit(
            webhooks.FINISHED,
            operation,
            outcome=operation.status,
            desktops=desktops,
            error=operation.error,
        )
    log.info(
        "operation %s ended %s: %s",
        operation_id,
        operation.status,
        ", ".join(f"{count} {status}" for status, count in desktops.items()),
        extra={"operation_id": operation_id},
    )
    _after(operation)
    return True


def _after(operation: Operation) -> None:
    """Clean up after an operation: replicas it left unused go, then whatever its kind does
    once it has ended (a deleted pool goes once empty)."""
    if operation.pool_id is None:
        return
    pool = Pool.objects.filter(pk=operation.pool_id).select_related("endpoint").first()
    if pool is None:
        return
    kind = operation.spec
    if kind.frees_replicas:
        replicas.remove_unused(pool.endpoint_id)
    kind.after(operation)
