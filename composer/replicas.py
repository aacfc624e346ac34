"""Replicas: one read-only full copy of an image version per datastore that needs it."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from composer import endpoint_drivers
from composer.drivers.base import DriverError, ImageRef, NotFound, ReplicaInfo
from pools.models import Datastore, Desktop, ImageVersion, Replica

log = logging.getLogger(__name__)


def image_ref(version: ImageVersion) -> ImageRef:
    return ImageRef(
        parent_vm=version.image.parent_vm,
        snapshot=version.snapshot,
        disk_mb=version.disk_mb,
        used_mb=version.used_mb,
        parent_ref=version.image.parent_ref,
        snapshot_ref=version.snapshot_ref,
    )


def replica_name(version: ImageVersion, datastore: Datastore) -> str:
    return f"replica-{version.pk}-{datastore.name}"


def replica_info(replica: Replica) -> ReplicaInfo:
    return ReplicaInfo(
        name=replica.name,
        datastore=replica.datastore.name,
        size_mb=replica.size_mb,
        snapshot=replica.snapshot,
    )


def ensure_replica(version: ImageVersion, datastore: Datastore) -> Replica:
    """The ready replica of `version` on `datastore`, cloning one if there is none.

    Safe to call from several workers at once: the hypervisor call is idempotent and the
    row is unique per (version, datastore). Raises DriverError when the clone fails.
    """
    try:
        with transaction.atomic():
            replica, _ = Replica.objects.get_or_create(
                image_version=version,
                datastore=datastore,
                defaults={"name": replica_name(version, datastore)},
            )
    except IntegrityError:  # another worker created it between our read and write
        replica = Replica.objects.get(image_version=version, datastore=datastore)
    if replica.status == Replica.Status.READY:
        return replica
    driver = endpoint_drivers.for_endpoint(datastore.endpoint)
    try:
        info = driver.clone_replica(image_ref(version), datastore.name, replica.name)
    except DriverError as exc:
        replica.status, replica.error = Replica.Status.FAILED, str(exc)
        replica.save(update_fields=["status", "error"])
        raise
    replica.status, replica.error = Replica.Status.READY, ""
    replica.snapshot, replica.size_mb = info.snapshot, info.size_mb
    replica.save(update_fields=["status", "error", "snapshot", "size_mb"])
    sync_datastore(datastore)
    return replica


def sync_datastore(datastore: Datastore) -> None:
    """Take the hypervisor's current capacity and free space for one datastore."""
    try:
        info = endpoint_drivers.for_endpoint(datastore.endpoint).datastore(datastore.name)
    except NotFound:
        return  # gone: the next inventory sync marks it
    Datastore.objects.filter(pk=datastore.pk).update(
        capacity_mb=info.capacity_mb, free_mb=info.free_mb, updated_at=timezone.now()
    )


def remove_unused(endpoint_id: int) -> list[str]:
    """Delete replicas no desktop uses or is about to use. Returns their names.

    A replica is kept while any desktop reads from it, or sits on its datastore with its
    image version (a desktop being provisioned there needs it next).
    """
    removed = []
    for replica in Replica.objects.filter(datastore__endpoint_id=endpoint_id).select_related(
        "datastore__endpoint"
    ):
        in_use = (
            Desktop.objects.filter(replica=replica).exists()
            or Desktop.objects.filter(
                image_version_id=replica.image_version_id, datastore_id=replica.datastore_id
            ).exists()
        )
        if in_use:
            continue
        try:
            endpoint_drivers.for_endpoint(replica.datastore.endpoint).delete_replica(replica.name)
        except DriverError as exc:
            log.warning("replica %s not removed: %s", replica.name, exc)
            continue
        replica.delete()
        sync_datastore(replica.datastore)
        removed.append(replica.name)
    return removed
