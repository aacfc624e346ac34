"""Provisioning: replicas for the operation, then each desktop step by step.

Every step is idempotent (the drivers guarantee it for hypervisor calls), and the step is
recorded on the desktop's row before it runs, so a resumed desktop starts again at the step
it was in instead of the beginning.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from composer import drivers
from composer.drivers.base import CustomizationSpec, DriverError, ImageRef, ReplicaInfo
from composer.models import Operation, OperationDesktop
from pools.models import Datastore, Desktop, ImageVersion, PersistentDisk, Replica
from pools.states import DesktopState, transition

log = logging.getLogger(__name__)


def image_ref(version: ImageVersion) -> ImageRef:
    return ImageRef(
        parent_vm=version.image.parent_vm,
        snapshot=version.snapshot,
        disk_mb=version.disk_mb,
        used_mb=version.used_mb,
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

    Raises DriverError when the clone fails; the Replica row then says why.
    """
    replica, _ = Replica.objects.get_or_create(
        image_version=version,
        datastore=datastore,
        defaults={"name": replica_name(version, datastore)},
    )
    if replica.status == Replica.Status.READY:
        return replica
    driver = drivers.for_endpoint(datastore.endpoint)
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
    """Take the hypervisor's current free space for one datastore."""
    driver = drivers.for_endpoint(datastore.endpoint)
    for info in driver.datastores():
        if info.name == datastore.name:
            Datastore.objects.filter(pk=datastore.pk).update(
                capacity_mb=info.capacity_mb, free_mb=info.free_mb, updated_at=timezone.now()
            )


PROVISION_STEPS = ["clone", "customize", "persistent_disk", "checkpoint", "power"]


def provision_desktop(task: OperationDesktop) -> None:
    """Run the provisioning steps for one desktop, from the step it recorded last."""
    desktop = Desktop.objects.select_related(
        "pool", "datastore__endpoint", "image_version__image"
    ).get(pk=task.desktop_id)
    pool = desktop.pool
    driver = drivers.for_endpoint(desktop.datastore.endpoint)
    start = PROVISION_STEPS.index(task.step) if task.step in PROVISION_STEPS else 0

    for step in PROVISION_STEPS[start:]:
        _record_step(task, step)
        if step == "clone":
            replica = Replica.objects.select_related("datastore").get(
                image_version=desktop.image_version,
                datastore=desktop.datastore,
                status=Replica.Status.READY,
            )
            vm = driver.create_linked_clone(
                desktop.name, replica_info(replica), desktop.datastore.name
            )
            desktop.replica, desktop.driver_ref = replica, vm.ref
            desktop.delta_mb = vm.delta_mb
            desktop.save(update_fields=["replica", "driver_ref", "delta_mb", "updated_at"])
        elif step == "customize":
            _ensure_state(desktop, DesktopState.CUSTOMIZING)
            driver.customize(desktop.name, CustomizationSpec(desktop.name, pool.domain))
        elif step == "persistent_disk":
            if pool.persistent_disk_mb:
                _persistent_disk(driver, desktop, pool.persistent_disk_mb)
        elif step == "checkpoint":
            desktop.checkpoint = driver.checkpoint(desktop.name)
            desktop.delta_mb = driver.get_vm(desktop.name).delta_mb
            desktop.save(update_fields=["checkpoint", "delta_mb", "updated_at"])
        elif step == "power":
            if pool.ready_state == DesktopState.AVAILABLE:
                driver.power_on(desktop.name)
            _ensure_state(desktop, pool.ready_state)
    sync_datastore(desktop.datastore)


def _persistent_disk(driver, desktop: Desktop, size_mb: int) -> None:
    name = f"{desktop.name}-pd"
    disk, _ = PersistentDisk.objects.get_or_create(
        name=name,
        defaults={
            "pool": desktop.pool,
            "desktop": desktop,
            "datastore": desktop.datastore,
            "size_mb": size_mb,
            "user": desktop.assigned_user,
        },
    )
    driver.create_disk(name, disk.datastore.name, size_mb)
    driver.attach_disk(desktop.name, name)


def _record_step(task: OperationDesktop, step: str) -> None:
    task.step = step
    task.save(update_fields=["step"])


def _ensure_state(desktop: Desktop, state: str) -> None:
    # A resumed step may find the desktop already in the state it moves to.
    if desktop.state != state:
        transition(desktop, state)


def fail_desktop(task: OperationDesktop, message: str) -> None:
    """Record a desktop's failure: the task failed, the desktop is in Error with the reason."""
    with transaction.atomic():
        task.status, task.error, task.finished_at = (
            OperationDesktop.Status.FAILED,
            message,
            timezone.now(),
        )
        task.save(update_fields=["status", "error", "finished_at"])
        if task.desktop_id:
            desktop = Desktop.objects.select_for_update().get(pk=task.desktop_id)
            if desktop.state != DesktopState.ERROR:
                transition(desktop, DesktopState.ERROR, reason=message)
            else:
                desktop.reason = message
                desktop.save(update_fields=["reason", "updated_at"])


def prepare(operation: Operation) -> None:
    """Make sure every datastore the operation's desktops are placed on has a ready replica.

    Desktops whose replica cannot be made fail now with the reason; the others go on.
    """
    tasks = operation.tasks.filter(status=OperationDesktop.Status.PENDING).select_related(
        "desktop__datastore__endpoint", "desktop__image_version__image"
    )
    needed: dict[tuple[int, int], list[OperationDesktop]] = {}
    for task in tasks:
        key = (task.desktop.image_version_id, task.desktop.datastore_id)
        needed.setdefault(key, []).append(task)
    for waiting in needed.values():
        desktop = waiting[0].desktop
        try:
            ensure_replica(desktop.image_version, desktop.datastore)
        except DriverError as exc:
            message = f"replica on {desktop.datastore.name} failed: {exc}"
            log.warning("operation %s: %s", operation.pk, message)
            for task in waiting:
                fail_desktop(task, message)
