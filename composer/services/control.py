"""Controlling an operation once asked for: discard a plan, cancel, pause, resume."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from audit.log import Outcome, record
from composer import dispatch, lifecycle, webhooks
from composer.models import DesktopTask, Operation
from composer.services.authorization import MAINTENANCE, authorize
from composer.services.errors import OperationRefused

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = DesktopTask.Status


def _authorize(actor, operation: Operation, action: str, request) -> None:
    """Administrators may control any operation, helpdesk those of the kinds they may run on
    one desktop. Asked before the caller's transaction, so a denial stays recorded."""
    authorize(
        actor,
        MAINTENANCE,
        operation.spec.helpdesk_permission or MAINTENANCE,
        action=f"{action}_operation",
        target=operation.audit_target(),
        operation=operation,
        request=request,
        message=f"Your role does not allow you to {action} operations.",
    )


def _locked(operation: Operation) -> Operation:
    return Operation.objects.select_for_update().get(pk=operation.pk)


def discard(actor, operation: Operation, request=None) -> None:
    """A plan awaiting approval is dropped: nothing was changed, nothing will be."""
    _authorize(actor, operation, "discard", request)
    with transaction.atomic():
        operation = _locked(operation)
        if operation.status != Status.DRAFT:
            raise OperationRefused("Only a plan awaiting approval can be discarded.")
        operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
        operation.save(update_fields=["status", "finished_at"])
        operation.tasks.update(status=TaskStatus.SKIPPED, error="plan discarded")
        record(
            actor=actor,
            action=operation.kind,
            outcome="cancelled",
            target=operation.audit_target(),
            operation=operation,
            message="plan discarded",
            request=request,
        )


def cancel(actor, operation: Operation, request=None) -> Operation:
    """Desktops not reached yet stay as they were, marked "task halted"; the ones in flight
    finish their current desktop."""
    _authorize(actor, operation, "cancel", request)
    with transaction.atomic():
        operation = _locked(operation)
        if operation.status in (Status.SCHEDULED, Status.QUEUED):
            lifecycle.halt_pending(operation, f"cancelled by {actor.get_username()}")
            operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
        elif operation.status in (Status.RUNNING, Status.PAUSED):
            lifecycle.halt_pending(operation, f"cancelled by {actor.get_username()}")
            operation.status = Status.CANCELLING
        else:
            raise OperationRefused(f"The operation is {operation.get_status_display().lower()}.")
        operation.save(update_fields=["status", "finished_at"])
        record(
            actor=actor,
            action="cancel_operation",
            outcome=Outcome.SUCCEEDED,
            target=operation.audit_target(),
            operation=operation,
            request=request,
        )
        if operation.status == Status.CANCELLED:  # never started: nothing else ends it
            webhooks.emit(webhooks.FINISHED, operation, outcome=operation.status, error="")
    log.info(
        "operation %s %s by %s",
        operation.pk,
        operation.status,
        actor.get_username(),
        extra={"operation_id": operation.pk},
    )
    if operation.status == Status.CANCELLING:
        if operation.prepared_at is None:
            # Not started on desktops yet: nothing in flight, end it now.
            Operation.objects.filter(pk=operation.pk).update(prepared_at=timezone.now())
        lifecycle.finish_if_done(operation.pk)
        operation.refresh_from_db()
    return operation


def _switch(
    actor, operation: Operation, action: str, old: str, new: str, event: str, request
) -> Operation:
    _authorize(actor, operation, action, request)
    with transaction.atomic():
        operation = _locked(operation)
        if operation.status != old:
            raise OperationRefused(f"Only a {old} operation can be {action}d.")
        operation.status = new
        operation.save(update_fields=["status"])
        record(
            actor=actor,
            action=f"{action}_operation",
            outcome=Outcome.SUCCEEDED,
            target=operation.audit_target(),
            operation=operation,
            request=request,
        )
        webhooks.emit(event, operation, by=actor.get_username())
    log.info(
        "operation %s %sd by %s",
        operation.pk,
        action,
        actor.get_username(),
        extra={"operation_id": operation.pk},
    )
    return operation


def pause(actor, operation: Operation, request=None) -> Operation:
    """Desktops in flight finish their current desktop; no new one starts until resumed."""
    return _switch(
        actor, operation, "pause", Status.RUNNING, Status.PAUSED, webhooks.PAUSED, request
    )


def resume(actor, operation: Operation, request=None) -> Operation:
    operation = _switch(
        actor, operation, "resume", Status.PAUSED, Status.RUNNING, webhooks.RESUMED, request
    )
    dispatch.dispatch(operation.pool.endpoint_id)
    lifecycle.finish_if_done(operation.pk)
    return operation
