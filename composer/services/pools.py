"""Pools: where new desktops go, creating a pool with its provisioning, choosing its
datastores."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q, Sum

from audit.log import Outcome, record
from composer import capacity, naming
from composer.models import DesktopTask, Operation
from composer.queue import RUN_OPERATION, enqueue_on_commit
from composer.services.authorization import authorize
from composer.services.errors import OperationRefused
from pools.models import (
    Datastore,
    Desktop,
    ImageVersion,
    Overcommit,
    Pool,
    PoolDatastore,
    Replica,
)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    naming_pattern: str
    size: int
    datastores: list[Datastore]
    image_version: ImageVersion
    overcommit: int
    power_policy: str = Pool.PowerPolicy.ALWAYS_ON
    persistent_disk_mb: int = 0
    max_concurrent_provisioning: int = 8
    domain: str = ""


def datastore_rooms(
    datastores: list[Datastore], version: ImageVersion, overcommit: int
) -> list[capacity.DatastoreRoom]:
    """What each datastore can still take, counting work already promised to pending desktops."""
    ids = [ds.pk for ds in datastores]
    committed = Desktop.objects.committed_mb_by_datastore(ids)
    # Desktops not yet cloned do not show in the hypervisor's free space: reserve for them.
    pending = dict(
        Desktop.objects.filter(datastore_id__in=ids, delta_mb=0)
        .values_list("datastore_id")
        .annotate(n=Count("*"))
    )
    replicas = set(
        Replica.objects.filter(datastore_id__in=ids, image_version=version)
        .exclude(status=Replica.Status.FAILED)
        .values_list("datastore_id", flat=True)
    )
    creating = dict(
        Replica.objects.filter(datastore_id__in=ids, status=Replica.Status.CREATING)
        .values_list("datastore_id")
        .annotate(total=Sum("image_version__used_mb"))
    )
    return [
        capacity.DatastoreRoom(
            name=ds.name,
            capacity_mb=ds.capacity_mb,
            free_mb=ds.free_mb
            - pending.get(ds.pk, 0) * capacity.NEW_CLONE_DELTA_MB
            - (creating.get(ds.pk) or 0),
            overcommit=overcommit,
            committed_mb=committed.get(ds.pk, 0),
            has_replica=ds.pk in replicas,
        )
        for ds in datastores
    ]


def place_new_desktops(
    spec: PoolSpec, taken_names: set[str] | None = None
) -> list[tuple[str, str]]:
    """(desktop name, datastore name) for each new desktop; raises DoesNotFit or NamingError."""
    version = spec.image_version
    clone = capacity.Clone(
        disk_mb=version.disk_mb, replica_mb=version.used_mb, extra_mb=spec.persistent_disk_mb
    )
    rooms = datastore_rooms(spec.datastores, version, spec.overcommit)
    placement = capacity.place(spec.size, rooms, clone)
    if taken_names is None:
        taken_names = _names_like(spec.naming_pattern)
    names = naming.names(spec.naming_pattern, spec.size, taken_names)
    return list(zip(names, placement, strict=True))


def _names_like(pattern: str) -> set[str]:
    parsed = naming.parse(pattern)
    query = Q(name__istartswith=parsed.prefix) if parsed.prefix else Q()
    return set(Desktop.objects.filter(query).values_list("name", flat=True))


def create_pool(actor, spec: PoolSpec, request=None) -> Operation:
    """Create a pool and its desktops, and queue their provisioning.

    Raises PermissionDenied (after recording the denial), DoesNotFit or NamingError.
    """
    authorize(
        actor,
        "pools.add_pool",
        action="create_pool",
        parameters={"name": spec.name},
        request=request,
        message="Only administrators may create pools.",
    )

    with transaction.atomic():
        # Lock the datastores so two pools created at once cannot both take the last room.
        list(Datastore.objects.select_for_update().filter(pk__in=[d.pk for d in spec.datastores]))
        placement = place_new_desktops(spec)
        by_name = {ds.name: ds for ds in spec.datastores}
        endpoint = spec.image_version.image.endpoint
        pool = Pool.objects.create(
            name=spec.name,
            endpoint=endpoint,
            naming_pattern=spec.naming_pattern,
            size=spec.size,
            image_version=spec.image_version,
            power_policy=spec.power_policy,
            persistent_disk_mb=spec.persistent_disk_mb,
            max_concurrent_provisioning=spec.max_concurrent_provisioning,
            domain=spec.domain,
        )
        PoolDatastore.objects.bulk_create(
            PoolDatastore(pool=pool, datastore=ds, overcommit=spec.overcommit)
            for ds in spec.datastores
        )
        desktops = Desktop.objects.bulk_create(
            Desktop(
                pool=pool,
                name=name,
                datastore=by_name[ds_name],
                image_version=spec.image_version,
            )
            for name, ds_name in placement
        )
        operation = Operation.objects.create(
            kind="provision",
            pool=pool,
            pool_name=pool.name,
            requested_by=actor,
            options={"desktops": len(desktops)},
        )
        DesktopTask.objects.bulk_create(
            DesktopTask(operation=operation, desktop=d, desktop_name=d.name) for d in desktops
        )
        record(
            actor=actor,
            action="create_pool",
            outcome=Outcome.REQUESTED,
            target=pool,
            operation=operation,
            parameters={
                "size": spec.size,
                "naming_pattern": spec.naming_pattern,
                "datastores": [ds.name for ds in spec.datastores],
                "image_version": str(spec.image_version),
                "overcommit": spec.overcommit,
            },
            request=request,
        )
        enqueue_on_commit(RUN_OPERATION, operation.job_id, operation.pk)
    return operation


def set_pool_datastores(actor, pool: Pool, changes, request=None) -> None:
    """Select or deselect datastores for a pool and set their over-commit level.

    `changes` is a list of (datastore, selected, overcommit). Deselecting keeps the row
    (selected=False) so the next rebalance vacates the datastore.
    """
    authorize(
        actor,
        "pools.change_pool",
        action="pool_datastores",
        target=pool,
        request=request,
        message="Only administrators may change a pool's datastores.",
    )
    foreign = [ds.name for ds, _, _ in changes if ds.endpoint_id != pool.endpoint_id]
    if foreign:
        raise OperationRefused(f"Not on the pool's hypervisor: {', '.join(foreign)}.")
    with transaction.atomic():
        # One editor at a time per pool: the rows are read and written under its lock.
        Pool.objects.select_for_update().get(pk=pool.pk)
        for ds, selected, overcommit in changes:
            PoolDatastore.objects.update_or_create(
                pool=pool, datastore=ds, defaults={"selected": selected, "overcommit": overcommit}
            )
        record(
            actor=actor,
            action="pool_datastores",
            outcome=Outcome.SUCCEEDED,
            target=pool,
            parameters={
                "changed": {
                    ds.name: {"selected": selected, "overcommit": Overcommit(overcommit).label}
                    for ds, selected, overcommit in changes
                }
            },
            request=request,
        )
