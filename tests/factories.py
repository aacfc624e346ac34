"""Inventory and operation rows for tests, built directly in the database.

Plain functions with the defaults most tests want; every one takes the model's other fields
as keywords. Sizes are MiB, as everywhere (GIB = 1024). These write rows only: nothing reaches
a hypervisor (the `lab` fixture in tests/conftest.py builds a simulated one), and a pool made
here has no provisioning operation (`requested_pool` makes one as an administrator would).
"""

from __future__ import annotations

from composer import services
from composer.models import DesktopTask, Operation
from pools.models import (
    BaseImage,
    Datastore,
    Desktop,
    HypervisorEndpoint,
    ImageVersion,
    Pool,
    PoolDatastore,
    Replica,
)

GIB = 1024


def endpoint(name: str = "sim", **fields) -> HypervisorEndpoint:
    return HypervisorEndpoint.objects.create(name=name, **fields)


def datastore(
    on: HypervisorEndpoint, name: str, capacity_mb: int = 100 * GIB, free_mb: int | None = None
) -> Datastore:
    """A datastore; empty unless free_mb says otherwise."""
    return Datastore.objects.create(
        endpoint=on,
        name=name,
        capacity_mb=capacity_mb,
        free_mb=capacity_mb if free_mb is None else free_mb,
    )


def image(on: HypervisorEndpoint, name: str = "Win11", parent_vm: str = "gold") -> BaseImage:
    return BaseImage.objects.create(endpoint=on, name=name, parent_vm=parent_vm)


def version(
    of: BaseImage, snapshot: str = "v1", disk_mb: int = 40 * GIB, used_mb: int = 20 * GIB
) -> ImageVersion:
    return ImageVersion.objects.create(
        image=of, snapshot=snapshot, disk_mb=disk_mb, used_mb=used_mb
    )


def replica(
    of: ImageVersion, on: Datastore, status: str = Replica.Status.READY, **fields
) -> Replica:
    fields.setdefault("name", f"replica-{of.snapshot}-{on.name}")
    return Replica.objects.create(image_version=of, datastore=on, status=status, **fields)


def pool(
    name: str,
    image_version: ImageVersion,
    datastores=(),
    overcommit: int = 4,
    size: int = 1,
    naming_pattern: str | None = None,
    **fields,
) -> Pool:
    """A pool on its image's endpoint, linked to `datastores` (each at `overcommit`; a
    (datastore, {"overcommit": ..., "selected": ...}) pair sets one link's own)."""
    made = Pool.objects.create(
        name=name,
        endpoint=image_version.image.endpoint,
        naming_pattern=naming_pattern or f"{name[:3].upper()}-{{n}}",
        size=size,
        image_version=image_version,
        **fields,
    )
    for ds in datastores:
        ds, link = ds if isinstance(ds, tuple) else (ds, {})
        PoolDatastore.objects.create(pool=made, datastore=ds, **({"overcommit": overcommit} | link))
    return made


def desktop(in_pool: Pool, name: str, on: Datastore, **fields) -> Desktop:
    """A desktop of its pool's image version unless `image_version` says otherwise."""
    _default_version(in_pool, fields)
    return Desktop.objects.create(pool=in_pool, name=name, datastore=on, **fields)


def desktops(in_pool: Pool, names, on: Datastore, **fields) -> list[Desktop]:
    """Several desktops alike but for their names, in one query."""
    _default_version(in_pool, fields)
    return Desktop.objects.bulk_create(
        Desktop(pool=in_pool, name=name, datastore=on, **fields) for name in names
    )


def _default_version(in_pool: Pool, fields: dict) -> None:
    if "image_version" not in fields and "image_version_id" not in fields:
        fields["image_version_id"] = in_pool.image_version_id


def operation(
    on: Pool, requested_by, kind: str = "refresh", status: str = "running", **fields
) -> Operation:
    return Operation.objects.create(
        kind=kind,
        pool=on,
        pool_name=on.name,
        status=status,
        requested_by=requested_by,
        **fields,
    )


def task(of: Operation, for_desktop: Desktop, status: str = "pending", **fields) -> DesktopTask:
    return DesktopTask.objects.create(
        operation=of,
        desktop=for_desktop,
        desktop_name=for_desktop.name,
        status=status,
        **fields,
    )


def requested_pool(admin, lab, name: str, pattern: str, size: int, **spec) -> Pool:
    """A pool created as an administrator would (composer.services.create_pool), on the
    `lab` fixture's ds-a and ds-b at 4x: its desktops and their provisioning are queued,
    not run."""
    services.create_pool(
        admin,
        services.PoolSpec(
            name=name,
            naming_pattern=pattern,
            size=size,
            datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
            image_version=lab.v1,
            overcommit=4,
            **spec,
        ),
    )
    return lab.endpoint.pools.get(name=name)
