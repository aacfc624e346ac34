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
    counts = dict(operation.tasks.values_list("status").annotate(n=Count("id")).order_by())
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
