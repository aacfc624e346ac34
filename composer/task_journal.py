"""A driver's journal of tasks under way, kept in the database (HypervisorTask), and the
places it found, kept on the endpoint's row: lent to drivers by composer/endpoint_drivers.py.

A worker that dies while vCenter runs a task leaves the task's id here; the attempt that
picks the desktop up again waits for that task instead of starting the same work twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from composer.models import HypervisorTask
from pools.models import HypervisorEndpoint


@dataclass(frozen=True)  # hashable: drivers are cached per (settings, journal)
class DatabaseJournal:
    endpoint_id: int

    def get(self, key: str) -> str | None:
        row = HypervisorTask.objects.filter(endpoint_id=self.endpoint_id, key=key).first()
        return row.task_id if row else None

    def put(self, key: str, task_id: str) -> None:
        rows = HypervisorTask.objects.filter(endpoint_id=self.endpoint_id, key=key)
        if rows.update(task_id=task_id, started_at=timezone.now()):
            return
        try:
            with transaction.atomic():
                HypervisorTask.objects.create(
                    endpoint_id=self.endpoint_id, key=key, task_id=task_id
                )
        except IntegrityError:  # written by another worker in between: the latest id wins
            rows.update(task_id=task_id, started_at=timezone.now())

    def drop(self, key: str) -> None:
        HypervisorTask.objects.filter(endpoint_id=self.endpoint_id, key=key).delete()


@dataclass(frozen=True)  # hashable, as the journal
class DatabasePlaces:
    """Where a driver keeps the ids of the places it found (the vSphere driver's
    composer/drivers/vsphere/places.py): on the endpoint's row, so every worker's next job
    starts from them."""

    endpoint_id: int

    def get(self) -> dict | None:
        return (
            HypervisorEndpoint.objects.filter(pk=self.endpoint_id)
            .values_list("driver_places", flat=True)
            .first()
        )

    def put(self, places: dict) -> None:
        HypervisorEndpoint.objects.filter(pk=self.endpoint_id).update(driver_places=places)
