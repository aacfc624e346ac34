"""Handing desktops to workers under the concurrency limits, and finishing operations.

The limits (DESIGN.md) hold globally, whatever number of workers runs: the count of desktops
in flight is read from the database under a lock on the hypervisor endpoint's row, so two
workers dispatching at once are serialized. Each desktop job dispatches the next pending
desktop when it ends, which keeps the pipeline full without waiting for a whole batch.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from composer.models import Operation, OperationDesktop
from composer.queue import enqueue_on_commit
from pools.models import HypervisorEndpoint
from portal.audit import record

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = OperationDesktop.Status

PROVISIONING_KINDS = (Operation.Kind.PROVISION,)


def limit_class(kind: str) -> str:
    return "provisioning" if kind in PROVISIONING_KINDS else "maintenance"


def dispatch(endpoint_id: int) -> int:
    """Dispatch pending desktops of prepared, running operations on this endpoint, oldest
    operation first, while the endpoint's and each pool's limits allow. Returns how many."""
    from composer.jobs import run_desktop

    dispatched = 0
    with transaction.atomic():
        endpoint = HypervisorEndpoint.objects.select_for_update().get(pk=endpoint_id)
        in_flight = OperationDesktop.objects.filter(
            operation__pool__endpoint=endpoint, status__in=OperationDesktop.IN_FLIGHT
        )
        endpoint_busy = {
            "provisioning": in_flight.filter(operation__kind__in=PROVISIONING_KINDS).count(),
            "maintenance": in_flight.exclude(operation__kind__in=PROVISIONING_KINDS).count(),
        }
        endpoint_limit = {
            "provisioning": endpoint.max_provisioning,
            "maintenance": endpoint.max_maintenance,
        }
        operations = (
            Operation.objects.filter(
                pool__endpoint=endpoint, status=Status.RUNNING, prepared_at__isnull=False
            )
            .select_related("pool")
            .annotate(
                pending=Count("tasks", filter=Q(tasks__status=TaskStatus.PENDING)),
            )
            .filter(pending__gt=0)
            .order_by("started_at", "id")
        )
        pool_busy: dict[int, int] = {}
        for operation in operations:
            cls = limit_class(operation.kind)
            pool = operation.pool
            if pool.pk not in pool_busy:
                pool_busy[pool.pk] = in_flight.filter(operation__pool=pool).count()
            pool_limit = (
                pool.max_concurrent_provisioning
                if cls == "provisioning"
                else pool.max_concurrent_maintenance
            )
            room = min(endpoint_limit[cls] - endpoint_busy[cls], pool_limit - pool_busy[pool.pk])
            if room <= 0:
                continue
            tasks = list(operation.tasks.filter(status=TaskStatus.PENDING).order_by("id")[:room])
            for task in tasks:
                task.status = TaskStatus.DISPATCHED
                task.save(update_fields=["status"])
                enqueue_on_commit(run_desktop, task.job_id, task.pk)
            endpoint_busy[cls] += len(tasks)
            pool_busy[pool.pk] += len(tasks)
            dispatched += len(tasks)
    return dispatched


def finish_if_done(operation_id: int) -> bool:
    """End the operation once every desktop in it has finished. Safe to call from every
    desktop job: the row lock and the status check let exactly one of them finish it."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        if operation.status != Status.RUNNING:
            return False
        counts = dict(operation.tasks.values_list("status").annotate(n=Count("id")).order_by())
        if any(counts.get(s) for s in (TaskStatus.PENDING, *OperationDesktop.IN_FLIGHT)):
            return False
        failed = counts.get(TaskStatus.FAILED, 0)
        succeeded = counts.get(TaskStatus.SUCCEEDED, 0)
        if failed and succeeded:
            operation.status = Status.PARTIALLY_FAILED
        elif failed:
            operation.status = Status.FAILED
        else:
            operation.status = Status.SUCCEEDED
        operation.finished_at = timezone.now()
        operation.save(update_fields=["status", "finished_at"])
        record(
            actor=operation.requested_by,
            action=operation.kind,
            outcome=operation.status,
            target=operation.pool,
            operation=operation,
            parameters={"succeeded": succeeded, "failed": failed},
            message=operation.error,
        )
    log.info("operation %s ended %s", operation_id, operation.status)
    return True
