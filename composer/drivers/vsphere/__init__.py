"""VMware vSphere through vCenter's API (pyvmomi).

How the portal's objects map onto vSphere:

- Everything the portal creates lives in one VM folder (`vm_folder`, an inventory path such
  as `VDI/Pools`) and carries a marker in its extraConfig, set atomically by the clone itself:
  `vdiportal.kind` = "replica" or "desktop" (and `vdiportal.replica` on desktops). The folder
  makes names unique and lookups cheap (SearchIndex.FindChild); the marker tells the portal's
  VMs from anything else an administrator puts there. A desktop is found by its VM's id once
  it has one, so a VM moved to another folder is still found.
- A replica is a full clone of the image's parent VM at its snapshot, with one snapshot of its
  own (`vdiportal-replica`) to clone from, then marked as a template so nobody powers it on.
- A desktop is a linked clone of a replica's snapshot (diskMoveType
  "createNewChildDiskBacking"). Its checkpoint is a snapshot taken after customization;
  refresh reverts to it. Recompose swaps its delta disk for a new child of the replica's base
  disk in one reconfiguration, so the VM (name, MAC, BIOS UUID) stays and is never diskless.
- Persistent disks are independent-persistent virtual disks in `[datastore] vdiportal-disks/`,
  attached and detached with ReconfigVM_Task without touching the file, on whichever SCSI,
  NVMe or SATA controller has a free slot; being independent, snapshot revert never touches
  them. The portal records each disk's datastore and goes straight to it.

The modules: settings (what an endpoint says; registered below with the driver as "vsphere"),
session (connection, calls, property reads), faults (errors for people), tasks (the task
journal), lookup (inventory paths, names, placement), devices (disks and controllers),
inventory (what is read and how it becomes driver values), operations (the driver itself).
"""

from composer.drivers.registry import register
from composer.drivers.vsphere.faults import translate
from composer.drivers.vsphere.operations import VSphereDriver
from composer.drivers.vsphere.session import VSphereConfig
from composer.drivers.vsphere.settings import VSphereSettings
from composer.drivers.vsphere.tasks import MemoryJournal, TaskJournal

__all__ = [
    "MemoryJournal",
    "TaskJournal",
    "VSphereConfig",
    "VSphereDriver",
    "VSphereSettings",
    "translate",
]

register("vsphere", "VMware vSphere (vCenter)", VSphereDriver, VSphereSettings)
