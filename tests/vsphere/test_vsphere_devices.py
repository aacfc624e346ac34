"""Disks and controllers (composer/drivers/vsphere/devices.py): where a new disk goes, and the
system-disk swap of a rebuild, on device lists built by hand."""

import pytest
from pyVmomi import vim

from composer.drivers.base import DriverError
from composer.drivers.vsphere import devices

Dev = vim.vm.device


def disk(key, controller, unit, path):
    return Dev.VirtualDisk(
        key=key,
        controllerKey=controller,
        unitNumber=unit,
        capacityInKB=4 * 1024 * 1024,
        backing=Dev.VirtualDisk.FlatVer2BackingInfo(fileName=path, diskMode="persistent"),
    )


def scsi(key=1000, bus=0):
    return Dev.ParaVirtualSCSIController(key=key, busNumber=bus, scsiCtlrUnitNumber=7)


def nvme(key=31000, bus=0):
    return Dev.VirtualNVMEController(key=key, busNumber=bus)


def sata(key=15000, bus=0):
    return Dev.VirtualAHCIController(key=key, busNumber=bus)


def test_a_new_disk_takes_the_first_free_unit_skipping_the_scsi_controllers_own():
    used = [disk(2000 + u, 1000, u, f"[ds] vm/vm-{u}.vmdk") for u in range(7)]
    assert devices.free_slot([scsi(), *used], "VDI-001") == (1000, 8)


@pytest.mark.parametrize("controller", [nvme(), sata()], ids=["nvme", "sata"])
def test_an_image_without_scsi_gets_its_disks_on_nvme_or_sata(controller):
    system = disk(2000, controller.key, 0, "[ds] vm/vm.vmdk")
    assert devices.free_slot([controller, system], "VDI-001") == (controller.key, 1)


def test_scsi_is_preferred_then_the_next_bus_when_full():
    full = [disk(3000 + u, 1000, u, f"[ds] vm/{u}.vmdk") for u in range(16) if u != 7]
    assert devices.free_slot([nvme(), scsi(), *full], "VDI-001") == (31000, 0)
    assert devices.free_slot([nvme(), scsi(), scsi(1001, 1), *full], "VDI-001") == (1001, 0)


def test_no_controller_or_no_free_slot_is_said_before_anything_changes():
    with pytest.raises(DriverError, match="has no SCSI, NVMe or SATA disk controller"):
        devices.free_slot([Dev.VirtualIDEController(key=200, busNumber=0)], "VDI-001")
    full = [disk(3000 + u, 31000, u, f"[ds] vm/{u}.vmdk") for u in range(15)]
    with pytest.raises(DriverError, match="no free disk slot on its NVMe controllers"):
        devices.free_slot([nvme(), *full], "VDI-001")


def test_persistent_and_system_disks_are_told_apart_by_their_folder():
    system = disk(2000, 1000, 0, "[ds] VDI-001/VDI-001.vmdk")
    user = disk(2001, 1000, 1, "[ds] vdiportal-disks/VDI-001-pd.vmdk")
    hardware = [scsi(), system, user]
    assert devices.system_disks(hardware) == [system]
    assert devices.persistent_disks(hardware) == [user]
    assert devices.device_for(hardware, "VDI-001-pd") is user
    assert devices.disk_name(user) == "VDI-001-pd"


def test_the_swap_replaces_each_system_disk_in_its_own_slot_in_one_change():
    old = disk(2000, 31000, 0, "[ds] VDI-001/VDI-001-delta.vmdk")
    user = disk(2001, 31000, 1, "[ds] vdiportal-disks/VDI-001-pd.vmdk")
    base = disk(2000, 1000, 0, "[ds] replica-2/replica-2.vmdk")
    changes = devices.swap_system_disks("VDI-001", [nvme(), old, user], [base], "[ds] VDI-001/")
    assert [(c.operation, c.fileOperation) for c in changes] == [
        ("remove", "destroy"),
        ("add", "create"),
    ]
    assert changes[0].device is old  # only the delta goes; the persistent disk stays
    new = changes[1].device
    assert (new.controllerKey, new.unitNumber) == (31000, 0)
    assert new.backing.fileName.startswith("[ds] VDI-001/VDI-001-delta-")
    assert new.backing.parent.fileName == "[ds] replica-2/replica-2.vmdk"


def test_a_replica_with_other_disks_than_the_desktop_is_refused_before_anything_changes():
    old = disk(2000, 1000, 0, "[ds] VDI-001/VDI-001.vmdk")
    bases = [disk(1, 1000, 0, "[ds] r/r.vmdk"), disk(2, 1000, 1, "[ds] r/r_1.vmdk")]
    with pytest.raises(DriverError, match="has 1 system disk.* and the replica 2"):
        devices.swap_system_disks("VDI-001", [scsi(), old], bases, "[ds] VDI-001/")
