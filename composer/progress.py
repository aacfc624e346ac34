"""Progress of an operation, counted from its per-desktop rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count

from composer import eta
from composer.models import DesktopTask, Operation


@dataclass(frozen=True)
class Progress:
    total: int
    succeeded: int
    failed: int
    finished: int  # succeeded, failed, halted or skipped: nothing more to do
    running: int  # a worker is on it
    dispatched: int  # handed out, waiting for a worker to take it
    waiting: int  # waiting for a logoff, or for the hypervisor to answer
    paused: bool = False

    @property
    def done(self) -> int:
        """Desktops done, that is succeeded: a halted or failed desktop is not done."""
        return self.succeeded

    @property
    def halted(self) -> int:
        return self.finished - self.succeeded - self.failed

    @property
    def in_flight(self) -> int:
        return self.running + self.dispatched

    @property
    def pending(self) -> int:
        """Not handed out yet."""
        return self.total - self.finished - self.running - self.dispatched - self.waiting

    @property
    def not_started(self) -> int:
        """Neither finished nor being worked on: what a pause holds back."""
        return self.total - self.finished - self.running

    @property
    def percent(self) -> int:
        """How far through it is (every finished desktop), for the bar's length."""
        return round(100 * self.finished / self.total) if self.total else 100

    @property
    def outcome(self) -> str:
        """The bar's colour: ok, mixed (some failed or halted) or bad (none succeeded)."""
        if self.failed or self.halted:
            return "bad" if not self.succeeded and self.finished == self.total else "mixed"
        return "ok"


def of(operation: Operation) -> Progress:
    counts = dict(operation.tasks.values_list("status").annotate(n=Count("*")).order_by())
    return _counted(counts, paused=operation.status == Operation.Status.PAUSED)


def _counted(counts: dict[str, int], paused: bool = False) -> Progress:
    status = DesktopTask.Status
    return Progress(
        total=sum(counts.values()),
        succeeded=counts.get(status.SUCCEEDED, 0),
        failed=counts.get(status.FAILED, 0),
        finished=sum(counts.get(s, 0) for s in DesktopTask.FINISHED),
        running=counts.get(status.RUNNING, 0),
        dispatched=counts.get(status.DISPATCHED, 0),
        waiting=counts.get(status.WAITING, 0),
        paused=paused,
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
            DesktopTask.objects.filter(operation_id__in=counts)
            .values_list("operation_id", "status")
            .annotate(n=Count("*"))
            .order_by()
        ):
            counts[operation_id][status] = n
    for operation in operations:
        operation.progress = _counted(
            counts[operation.pk], paused=operation.status == Operation.Status.PAUSED
        )
    return operations


def attach_remaining(operations, now=None) -> list[Operation]:
    """Set `remaining` (estimated time to finish, or None) on running operations that have
    `progress`: composer.eta.estimate from the throughput so far, the same rule as the
    operation page. No query."""
    from django.utils import timezone

    now = now or timezone.now()
    operations = list(operations)
    for operation in operations:
        operation.remaining = remaining(operation, now)
    return operations


def remaining(operation: Operation, now) -> timedelta | None:
    """Estimated time to finish a running operation with `progress`, else None."""
    if operation.status != Operation.Status.RUNNING:
        return None
    since = operation.prepared_at or operation.started_at
    if since is None:
        return None
    counted = operation.progress
    return eta.estimate(
        counted.succeeded + counted.failed, counted.total - counted.finished, now - since
    )
