"""Progress of an operation, counted from its per-desktop rows."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from composer.models import Operation, OperationDesktop


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int
    in_flight: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


def of(operation: Operation) -> Progress:
    return _counted(dict(operation.tasks.values_list("status").annotate(n=Count("id")).order_by()))


def _counted(counts: dict[str, int]) -> Progress:
    return Progress(
        total=sum(counts.values()),
        done=sum(counts.get(s, 0) for s in OperationDesktop.FINISHED),
        failed=counts.get(OperationDesktop.Status.FAILED, 0),
        in_flight=sum(counts.get(s, 0) for s in OperationDesktop.IN_FLIGHT),
    )


def attach(operation: Operation) -> Operation:
    """Set `operation.progress` for templates; returns the operation."""
    operation.progress = of(operation)
    return operation


def attach_all(operations) -> list[Operation]:
    """Set `progress` on many operations with one query (list pages, dashboard)."""
    operations = list(operations)
    counts: dict[int, dict[str, int]] = {op.pk: {} for op in operations}
    if counts:
        for operation_id, status, n in (
            OperationDesktop.objects.filter(operation_id__in=counts)
            .values_list("operation_id", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            counts[operation_id][status] = n
    for operation in operations:
        operation.progress = _counted(counts[operation.pk])
    return operations


def attach_remaining(operations) -> list[Operation]:
    """Set `remaining` (estimated time to finish, or None) on running operations that have
    `progress`, with one query: the average time a desktop took, by the database, fed to
    composer.eta.estimate (the same rule as the operation page)."""
    from django.db.models import Avg, DurationField, ExpressionWrapper, F

    from composer import eta

    operations = list(operations)
    running = [op.pk for op in operations if op.status == Operation.Status.RUNNING]
    averages = {}
    if running:
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        averages = dict(
            OperationDesktop.objects.filter(
                operation_id__in=running,
                status__in=[OperationDesktop.Status.SUCCEEDED, OperationDesktop.Status.FAILED],
                started_at__isnull=False,
                finished_at__isnull=False,
            )
            .values_list("operation_id")
            .annotate(average=Avg(took, output_field=DurationField()))
            .order_by()
        )
    for operation in operations:
        average = averages.get(operation.pk)
        counted = operation.progress
        operation.remaining = (
            eta.estimate([average], counted.total - counted.done, counted.in_flight)
            if average is not None
            else None
        )
    return operations
