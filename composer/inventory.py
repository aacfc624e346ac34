"""Bringing what the hypervisor reports into the inventory tables."""

from __future__ import annotations

from django.utils import timezone

from composer import drivers
from pools.models import Datastore, HypervisorEndpoint


def sync_datastores(endpoint: HypervisorEndpoint) -> list[Datastore]:
    """Create or update a Datastore row for every datastore the endpoint reports."""
    rows = []
    for info in drivers.for_endpoint(endpoint).datastores():
        row, _ = Datastore.objects.update_or_create(
            endpoint=endpoint,
            name=info.name,
            defaults={
                "capacity_mb": info.capacity_mb,
                "free_mb": info.free_mb,
                "updated_at": timezone.now(),
            },
        )
        rows.append(row)
    return rows
