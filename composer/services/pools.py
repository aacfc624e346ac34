"""Pools: where new desktops go, creating a pool with its provisioning, resizing it, choosing
its datastores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Q, Sum

from audit.log import Outcome, record
from composer import capacity, endpoint_drivers, kinds, naming
from composer.models import DesktopTask, Operation
from composer.queue import RUN_OPERATION, enqueue_on_commit
from composer.services import surplus
from composer.services.authorization import authorize
from composer.services.errors import OperationRefused
from composer.services.holds import busy, lock_desktops
from composer.services.requests import request_operation
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
    # An existing pool's own level per datastore id (PoolDatastore.overcommit), which
    # overrides `overcommit` for the datastores it names.
    overcommits: Mapping[int, int] | None = None
    power_policy: str = Pool.PowerPolicy.ALWAYS_ON
    persistent_disk_mb: int = 0
    max_concurrent_provisioning: int = 8
    domain: str = ""


def datastore_rooms(
    datastores: list[Datastore],
    version: ImageVersion,
    overcommit: int,
    overcommits: Mapping[int, int] | None = None,
) -> list[capacity.DatastoreRoom]:
    """What each datastore can still take, counting work already promised to pending desktops.
    `overcommits` (datastore id -> factor) overrides `overcommit` for the datastores it names."""
    overcommits = overcommits or {}
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
            overcommit=overcommits.get(ds.pk, overcommit),
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
    rooms = datastore_rooms(spec.datastores, version, spec.overcommit, spec.overcommits)
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
        operation = _provision_new_desktops(actor, pool, spec, placement)
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
    return operation


def _provision_new_desktops(
    actor, pool: Pool, spec: PoolSpec, placement: list[tuple[str, str]]
) -> Operation:
    """The desktops of `placement` as rows, and the provision operation that builds them,
    queued once the caller's transaction commits (creating a pool, growing one)."""
    by_name = {ds.name: ds for ds in spec.datastores}
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


def resize_pool(actor, pool: Pool, new_size: int, request=None) -> Operation | None:
    """Grow or shrink a pool to `new_size` desktops.

    The size is measured against the desktops the pool has, less those a started delete is
    removing. Growing places the new desktops as creating a pool does (the pool's selected
    datastores at their own over-commit, names from its pattern not used anywhere) and
    answers their provision operation. Shrinking deletes surplus desktops that are safe to
    remove (services/surplus.py says which, and in what order), keeping their persistent
    disks, and answers that delete operation. None: the pool already has that many.

    Raises PermissionDenied (after recording the denial), DoesNotFit, NamingError, or
    OperationRefused (too few desktops safe to remove, or a size below 1).
    """
    authorize(
        actor,
        "pools.change_pool",
        action="resize_pool",
        target=pool,
        parameters={"size": new_size},
        request=request,
        message="Only administrators may resize pools.",
    )
    if new_size < 1:
        raise OperationRefused("A pool keeps at least one desktop; delete the pool instead.")
    with transaction.atomic():
        # One resize at a time per pool: the second counts what the first left.
        pool = (
            Pool.objects.select_for_update().select_related("image_version__image").get(pk=pool.pk)
        )
        current = pool_desktop_count(pool)
        old_size = pool.size
        if new_size == current and old_size == new_size:
            return None  # nothing to do, nothing to record
        operation = None
        if new_size > current:
            operation = _grow(actor, pool, new_size - current)
        elif new_size < current:
            operation = _shrink(actor, pool, current - new_size, request)
        # Else only the recorded size had drifted from the desktops (some deleted one by one).
        pool.size = new_size
        pool.save(update_fields=["size"])
        record(
            actor=actor,
            action="resize_pool",
            outcome=Outcome.REQUESTED if operation else Outcome.SUCCEEDED,
            target=pool,
            operation=operation,
            parameters={"old_size": old_size, "desktops": current, "new_size": new_size},
            request=request,
        )
    return operation


def pool_desktop_count(pool: Pool) -> int:
    """The pool's desktops, less those a started operation is removing (a delete)."""
    leaving = (
        DesktopTask.objects.busy()
        .filter(desktop__pool=pool, operation__kind__in=kinds.removing_desktops())
        .values("desktop_id")
        .distinct()
        .count()
    )
    return pool.desktops.count() - leaving


def resize_spec(pool: Pool, count: int) -> PoolSpec:
    """`count` more desktops of the pool, as its settings and selected datastores say."""
    links = list(
        pool.pool_datastores.filter(selected=True, datastore__gone=False).select_related(
            "datastore"
        )
    )
    if not links:
        raise OperationRefused(f"Pool {pool.name} has no datastore selected for new desktops.")
    return PoolSpec(
        name=pool.name,
        naming_pattern=pool.naming_pattern,
        size=count,
        datastores=[link.datastore for link in links],
        image_version=pool.image_version,
        overcommit=links[0].overcommit,
        overcommits={link.datastore_id: link.overcommit for link in links},
        power_policy=pool.power_policy,
        persistent_disk_mb=pool.persistent_disk_mb,
        max_concurrent_provisioning=pool.max_concurrent_provisioning,
        domain=pool.domain,
    )


def _grow(actor, pool: Pool, count: int) -> Operation:
    spec = resize_spec(pool, count)
    # As create_pool: two requests at once cannot both take a datastore's last room.
    list(
        Datastore.objects.select_for_update()
        .filter(pk__in=[d.pk for d in spec.datastores])
        .order_by("pk")
    )
    placement = place_new_desktops(spec)
    return _provision_new_desktops(actor, pool, spec, placement)


def surplus_desktops(pool: Pool, count: int) -> tuple[list[Desktop], list[Desktop]]:
    """(the `count` desktops a shrink would delete, every desktop it may delete): the first
    is shorter than `count` when too few are safe to remove."""
    desktops = list(pool.desktops.select_related("datastore", "image_version"))
    reports_sessions = endpoint_drivers.driver_class(pool.endpoint).reports_sessions
    safe = surplus.removable(desktops, busy(desktops), reports_sessions)
    return safe[:count], safe


def _shrink(actor, pool: Pool, count: int, request) -> Operation:
    # Hold the pool's desktops, so none is assigned, logged on to or taken by another
    # operation between the choice and the delete's tasks; then read them again.
    lock_desktops(pool.desktops.values_list("pk", flat=True))
    chosen, safe = surplus_desktops(pool, count)
    if len(chosen) < count:
        raise _too_few_safe(len(safe), count)
    return request_operation(
        actor, pool, "delete", chosen, extra={"keep_disks": True}, request=request
    )


@dataclass(frozen=True)
class ResizePreview:
    """What resize_pool would do now, kept nowhere: the desktops the pool counts, and the new
    desktops it would place ((name, datastore name)) or those it would delete."""

    current: int
    new_size: int
    added: list[tuple[str, str]]
    removed: list[Desktop]


def preview_resize(pool: Pool, new_size: int) -> ResizePreview:
    """resize_pool() without its effects (no permission check: the caller's page has one).
    Raises what resize_pool would: DoesNotFit, NamingError, OperationRefused."""
    if new_size < 1:
        raise OperationRefused("A pool keeps at least one desktop; delete the pool instead.")
    current = pool_desktop_count(pool)
    added, removed = [], []
    if new_size > current:
        added = place_new_desktops(resize_spec(pool, new_size - current))
    elif new_size < current:
        count = current - new_size
        removed, safe = surplus_desktops(pool, count)
        if len(removed) < count:
            raise _too_few_safe(len(safe), count)
    return ResizePreview(current=current, new_size=new_size, added=added, removed=removed)


def _too_few_safe(safe: int, count: int) -> OperationRefused:
    return OperationRefused(
        f"Only {safe} of the {count} desktops to remove can be removed safely (the others "
        "are assigned, logged on to, busy or in the middle of a change)."
    )
