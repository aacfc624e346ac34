"""A VM's virtual disks and controllers: which disk is which, where a new one can go, and
the one reconfiguration that swaps a desktop's system disk for a new one.

Pure functions over pyvmomi device lists, so the rules are tested without a vCenter.
"""

from __future__ import annotations

import time

from pyVmomi import vim

from composer.drivers.base import DriverError

DISK_FOLDER = "vdiportal-disks"

# Disk controllers a golden image may have, in the order new persistent disks prefer them,
# with the unit numbers a disk can take on each (SCSI's unit 7 is the controller itself).
CONTROLLERS = [
    (vim.vm.device.VirtualSCSIController, "SCSI", [u for u in range(16) if u != 7]),
    (vim.vm.device.VirtualNVMEController, "NVMe", list(range(15))),
    (vim.vm.device.VirtualSATAController, "SATA", list(range(30))),
]


def disks(devices) -> list:
    return [d for d in devices or [] if isinstance(d, vim.vm.device.VirtualDisk)]


def is_persistent(disk) -> bool:
    return f"] {DISK_FOLDER}/" in (disk.backing.fileName or "")


def persistent_disks(devices) -> list:
    return [d for d in disks(devices) if is_persistent(d)]


def system_disks(devices) -> list:
    """The VM's own disks (from its image), in bus order, so two VMs' lists pair up."""
    by_key = {d.key: d for d in devices or []}

    def order(disk):
        controller = by_key.get(disk.controllerKey)
        bus = next(
            (i for i, (kind, _, _) in enumerate(CONTROLLERS) if isinstance(controller, kind)), 9
        )
        return (bus, getattr(controller, "busNumber", 0), disk.unitNumber or 0)

    return sorted((d for d in disks(devices) if not is_persistent(d)), key=order)


def disk_name(disk) -> str:
    """A persistent disk's name, from its file `[ds] vdiportal-disks/NAME.vmdk`."""
    return disk.backing.fileName.rpartition("/")[2].removesuffix(".vmdk")


def device_for(devices, disk: str):
    suffix = f"] {DISK_FOLDER}/{disk}.vmdk"
    return next((d for d in persistent_disks(devices) if d.backing.fileName.endswith(suffix)), None)


def free_slot(devices, vm_name: str) -> tuple[int, int]:
    """(controller key, unit number) for a new disk: the first free unit on a SCSI, NVMe or
    SATA controller, in that order. Raises before anything is changed when there is none."""
    used = {(d.controllerKey, d.unitNumber) for d in devices or [] if d.unitNumber is not None}
    found = []
    for kind, label, units in CONTROLLERS:
        for controller in sorted(
            (d for d in devices or [] if isinstance(d, kind)), key=lambda c: c.busNumber
        ):
            found.append(label)
            own = getattr(controller, "scsiCtlrUnitNumber", None)
            for unit in units:
                if unit != own and (controller.key, unit) not in used:
                    return controller.key, unit
    if not found:
        raise DriverError(
            f"VM {vm_name} has no SCSI, NVMe or SATA disk controller to attach disks to; "
            "add one to the golden image"
        )
    raise DriverError(f"VM {vm_name} has no free disk slot on its {'/'.join(found)} controllers")


def snapshot_file(disk) -> str:
    """The file of a replica's disk as its snapshot froze it: the parent of the disk's current
    (empty, since a template never runs) delta, or the disk itself without one."""
    parent = getattr(disk.backing, "parent", None)
    return parent.fileName if parent is not None else disk.backing.fileName


def vm_directory(vmx_path: str) -> str:
    """`[ds] VDI-001/` from `[ds] VDI-001/VDI-001.vmx`."""
    return vmx_path.rpartition("/")[0] + "/"


def datastore_of(path: str) -> str:
    return path.partition("]")[0].lstrip("[")


def swap_system_disks(vm_name: str, devices, base_disks: list, directory: str) -> list:
    """The device changes that replace each system disk of a VM by a new, empty child of the
    matching base disk, in the same slot (so the boot order stays), in `directory`.

    One ReconfigVM_Task applies all of them or none, so the desktop is never left without a
    system disk. The old disks' files are destroyed with them: they are the desktop's delta
    disks, which a rebuild throws away by definition.
    """
    old = system_disks(devices)
    if len(old) != len(base_disks):
        raise DriverError(
            f"{vm_name} has {len(old)} system disk(s) and the replica {len(base_disks)}: "
            "it was built from an image with other disks; delete and provision it again"
        )
    stamp = int(time.time() * 1000)
    changes = []
    for index, (current, base) in enumerate(zip(old, base_disks, strict=True)):
        changes.append(
            vim.vm.device.VirtualDeviceSpec(
                operation="remove", fileOperation="destroy", device=current
            )
        )
        new = vim.vm.device.VirtualDisk(
            key=-(index + 1),
            controllerKey=current.controllerKey,
            unitNumber=current.unitNumber,
            capacityInKB=base.capacityInKB,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=f"{directory}{vm_name}-delta-{stamp}-{index}.vmdk",
                diskMode="persistent",
                thinProvisioned=True,
                parent=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    fileName=snapshot_file(base), diskMode="persistent"
                ),
            ),
        )
        changes.append(
            vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=new)
        )
    return changes


def attach_spec(devices, vm_name: str, path: str):
    """The device change that attaches the persistent disk file `path` in a free slot.
    Independent: snapshots and their revert (refresh) never touch user data."""
    controller, unit = free_slot(devices, vm_name)
    device = vim.vm.device.VirtualDisk(
        key=-1,
        controllerKey=controller,
        unitNumber=unit,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=path, diskMode="independent_persistent"
        ),
    )
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=device)
