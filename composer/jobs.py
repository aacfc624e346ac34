"""RQ job entry points. They take row ids, never model instances, and do their work through
the rows: claim under a lock, call the hypervisor outside any transaction, finish under a lock.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from composer import dispatch, provision
from composer.drivers.base import DriverError
from composer.models import Operation, OperationDesktop

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = OperationDesktop.Status


def run_operation(operation_id: int) -> str:
    """Start an operation: prepare what its desktops need, then dispatch them to workers."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        if operation.status != Status.QUEUED:
            # Already started by another delivery of this job: nothing to do twice.
            return f"operation {operation_id} is {operation.status}"
        operation.status, operation.started_at = Status.RUNNING, timezone.now()
        operation.save(update_fields=["status", "started_at"])

    operation = Operation.objects.select_related("pool__endpoint").get(pk=operation_id)
    if operation.kind == Operation.Kind.PROVISION:
        provision.prepare(operation)
    Operation.objects.filter(pk=operation_id).update(prepared_at=timezone.now())
    dispatch.dispatch(operation.pool.endpoint_id)
    # Every desktop may have failed during preparation: then nothing was dispatched.
    dispatch.finish_if_done(operation_id)
    return f"operation {operation_id} started"


def run_desktop(task_id: int) -> str:
    """Do one desktop's part of an operation, then hand the freed slot to the next desktop."""
    with transaction.atomic():
        task = OperationDesktop.objects.select_for_update().get(pk=task_id)
        if task.status != TaskStatus.DISPATCHED:
            return f"desktop task {task_id} is {task.status}"
        task.status, task.started_at = TaskStatus.RUNNING, timezone.now()
        task.save(update_fields=["status", "started_at"])

    operation = Operation.objects.select_related("pool").get(pk=task.operation_id)
    try:
        if operation.kind == Operation.Kind.PROVISION:
            provision.provision_desktop(task)
        else:
            raise NotImplementedError(f"{operation.kind} is not implemented yet")
    except DriverError as exc:
        provision.fail_desktop(task, f"{task.step}: {exc}")
    except Exception as exc:
        # A bug must not leave the desktop in a busy state: record it, then let rq log it.
        log.exception("desktop task %s failed", task_id)
        provision.fail_desktop(
            task, f"{task.step}: internal error: {exc.__class__.__name__}: {exc}"
        )
    else:
        task.status, task.finished_at = TaskStatus.SUCCEEDED, timezone.now()
        task.save(update_fields=["status", "finished_at"])

    dispatch.dispatch(operation.pool.endpoint_id)
    dispatch.finish_if_done(operation.pk)
    return f"desktop {task.desktop_name}: {task.status}"
