"""Which desktops a live operation holds, and holding them while a request takes them.

Whoever gives desktops to an operation locks their rows first (lock_desktops), then skips
those another started operation already has (busy), so two requests at the same moment
cannot both take a desktop.
"""

from __future__ import annotations

from composer.models import DesktopTask, Operation
from pools.models import Desktop

Status = Operation.Status
TaskStatus = DesktopTask.Status


def lock_desktops(desktop_ids) -> None:
    """Hold these desktops' rows, taken in id order (so two holders never deadlock), until
    the transaction ends. Whoever gives desktops to a live operation holds them while it
    checks that no other live operation has them and adds its tasks, so two requests at the
    same moment cannot both find a desktop free. (SQLite's IMMEDIATE transactions already
    run one writer at a time.)"""
    ids = sorted(set(desktop_ids))
    if ids:
        list(
            Desktop.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def busy(desktops: list[Desktop]) -> dict[int, int]:
    """Desktop id -> the started operation already working on it (DesktopTask.objects.busy:
    a scheduled one is replaced, not skipped)."""
    return dict(
        DesktopTask.objects.busy()
        .filter(desktop_id__in=[d.pk for d in desktops])
        .values_list("desktop_id", "operation_id")
    )


def lock_scheduled_desktops(operation_id: int) -> None:
    """A scheduled operation about to start holds its desktops first (jobs.run_operation),
    then skip_busy() skips those another live operation took in the meantime."""
    lock_desktops(
        DesktopTask.objects.filter(
            operation_id=operation_id, status=TaskStatus.PENDING
        ).values_list("desktop_id", flat=True)
    )


def skip_busy(operation: Operation) -> None:
    tasks = operation.tasks.filter(status=TaskStatus.PENDING).select_related("desktop")
    held = busy([t.desktop for t in tasks if t.desktop])
    for task in tasks:
        if task.desktop_id in held:
            task.status, task.error = (
                TaskStatus.SKIPPED,
                f"busy in operation #{held[task.desktop_id]}",
            )
            task.save(update_fields=["status", "error"])
