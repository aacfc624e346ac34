"""Starting an operation now or at a given time, keeping one pending schedule per desktop:
a request to start now replaces the schedules of its desktops (DESIGN.md, "Options")."""

from __future__ import annotations

from django.utils import timezone

from audit.log import Outcome, record
from composer import webhooks
from composer.models import DesktopTask, Operation
from composer.queue import RUN_OPERATION, enqueue_at_on_commit, enqueue_on_commit
from composer.services.errors import OperationRefused

Status = Operation.Status
TaskStatus = DesktopTask.Status


def activate(operation: Operation, actor, request) -> None:
    """Queue it now or schedule it, keeping one pending schedule per desktop."""
    desktop_ids = list(
        operation.tasks.filter(status=TaskStatus.PENDING).values_list("desktop_id", flat=True)
    )
    scheduled = (
        DesktopTask.objects.scheduled()
        .filter(desktop_id__in=desktop_ids)
        .exclude(operation=operation)
    )
    cancelled: list[Operation] = []
    if operation.scheduled_for:
        clash = list(scheduled.values_list("desktop_name", "operation_id")[:10])
        if clash:
            names = ", ".join(f"{name} (operation #{op})" for name, op in clash)
            raise OperationRefused(
                f"Already scheduled: {names}. A desktop has one pending schedule; start now to "
                "replace it, or cancel that schedule first."
            )
        operation.status = Status.SCHEDULED
    else:
        replaced_ops = set(scheduled.values_list("operation_id", flat=True))
        scheduled.update(
            status=TaskStatus.HALTED,
            error=f"schedule replaced by operation #{operation.pk}",
            finished_at=timezone.now(),
        )
        for op_id in replaced_ops:
            emptied = _cancel_if_empty(op_id)
            if emptied is not None:
                cancelled.append(emptied)
        operation.status = Status.QUEUED
    operation.save(update_fields=["status", "scheduled_for", "urgent"])
    # Audit events last, after every row lock (record() takes the audit log's own lock).
    for replaced in cancelled:
        record(
            actor=actor,
            action=replaced.kind,
            outcome="cancelled",
            target=replaced.audit_target(),
            operation=replaced,
            message=replaced.error,
            request=request,
        )
    record(
        actor=actor,
        action=operation.kind,
        outcome=Outcome.REQUESTED,
        target=operation.audit_target(),
        operation=operation,
        parameters={
            "desktops": len(desktop_ids),
            "desktop_names": names_audited(operation),
            **option_parameters(operation),
        },
        request=request,
    )
    if operation.scheduled_for:
        enqueue_at_on_commit(operation.scheduled_for, RUN_OPERATION, operation.job_id, operation.pk)
    else:
        enqueue_on_commit(
            RUN_OPERATION, operation.job_id, operation.pk, queue_name=operation.queue_name
        )


def _cancel_if_empty(operation_id: int) -> Operation | None:
    """Cancel a scheduled operation left with no desktop; returns it, to be audited."""
    operation = Operation.objects.select_for_update().get(pk=operation_id)
    if operation.tasks.filter(status=TaskStatus.PENDING).exists():
        return None
    operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
    operation.error = "every desktop's schedule was replaced by a later request"
    operation.save(update_fields=["status", "finished_at", "error"])
    webhooks.emit(webhooks.FINISHED, operation, outcome=operation.status, error=operation.error)
    return operation


def option_parameters(operation: Operation) -> dict:
    return {
        "start_at": operation.scheduled_for.isoformat() if operation.scheduled_for else "now",
        "logoff_policy": operation.logoff_policy,
        "grace_seconds": operation.grace_seconds,
        "stop_on_error": operation.stop_on_error,
        # What the logged-on users were told (helpdesk's message, or the engine's warning).
        "warning_message": operation.warning_message,
        **{k: v for k, v in operation.options.items()},
    }


# Desktop names an audit event lists; the count is there in full.
NAMES_AUDITED = 50


def names_audited(operation: Operation) -> list[str]:
    return list(
        operation.tasks.filter(status=TaskStatus.PENDING)
        .order_by("desktop_name")
        .values_list("desktop_name", flat=True)[:NAMES_AUDITED]
    )
