"""vCenter estates laid out unlike the simulator's default, built with plain pyvmomi.

Each layout starts a simulator with some options, then rearranges it the way real estates
are: a datacenter in nested folders, VM folders several levels deep, a golden image whose
name another VM shares, a golden image with only an NVMe or SATA disk controller, a datastore
nobody may browse, a cluster without DRS, fifty datastores. It returns what the endpoint and
the image must be told, as an administrator would type it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyVmomi import vim

from tests.vsphere import vcsim
from tests.vsphere.vcsim import Reader, wait

GIB_KB = 1024 * 1024


@dataclass
class Layout:
    name: str
    sim_options: dict
    endpoint: dict = field(default_factory=dict)  # the endpoint's settings (VSphereSettings)
    parent: str = ""  # the golden image as the administrator names it
    pool_datastores: tuple[str, ...] = ("LocalDS_0", "LocalDS_1")
    vacate: str = "LocalDS_1"  # deselected, then rebalanced away from
    folder: str = "vdi-portal"  # the portal's VM folder under the datacenter's vm folder
    bus: str = ""  # "nvme" or "sata": the golden image has only that disk controller
    prepare: list = field(default_factory=list)  # functions(reader) run after start


def nest_datacenter(reader: Reader, *path: str) -> None:
    """Move the datacenter into folders `path` below its current parent folder."""
    folder = reader.dc.parent
    for name in path:
        child = reader.content.searchIndex.FindChild(entity=folder, name=name)
        folder = child or folder.CreateFolder(name=name)
    wait(folder.MoveIntoFolder_Task([reader.dc]))


def parent_with_only(reader: Reader, source: str, name: str, folder: str, bus: str) -> None:
    """A golden image `name` in VM folder `folder` whose only disk sits on an NVMe or SATA
    controller (no SCSI controller at all), with snapshots v1 and v2."""
    reader.clone(source, name, folder)
    vm = reader.vm_object(name)
    changes = [
        vim.vm.device.VirtualDeviceSpec(operation="remove", device=d)
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualSCSIController | vim.vm.device.VirtualDisk)
        or getattr(d, "controllerKey", None)
        in {
            c.key
            for c in vm.config.hardware.device
            if isinstance(c, vim.vm.device.VirtualSCSIController)
        }
    ]
    controller = (
        vim.vm.device.VirtualNVMEController(key=-50, busNumber=0, controllerKey=100)
        if bus == "nvme"
        else vim.vm.device.VirtualAHCIController(key=-50, busNumber=0, controllerKey=100)
    )
    home = vm.config.files.vmPathName.rpartition("/")[0]
    disk = vim.vm.device.VirtualDisk(
        key=-51,
        controllerKey=-50,
        unitNumber=0,
        capacityInKB=4 * GIB_KB,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=f"{home}/{name}-{bus}.vmdk", diskMode="persistent", thinProvisioned=True
        ),
    )
    changes += [
        vim.vm.device.VirtualDeviceSpec(operation="add", device=controller),
        vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk),
    ]
    wait(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes)))
    for snapshot in ("v1", "v2"):
        reader.snapshot_parent(name, snapshot)


def duplicate(reader: Reader, source: str, folder: str) -> None:
    """Another VM with the same name as `source`, in folder `folder`, with a snapshot v1 of
    its own: a lookup by name alone must not pick either."""
    reader.clone(source, reader.vm_object(source).name, folder)
    copies = [vm for vm in reader._all(vim.VirtualMachine) if vm.name == source]
    copy = next(vm for vm in copies if vm.parent.name == folder.rpartition("/")[2])
    wait(copy.CreateSnapshot_Task(name="v1", description="", memory=False, quiesce=False))


def _folders_no_drs() -> Layout:
    source = "DC0_C0_RP0_VM0"

    def prepare(reader: Reader):
        nest_datacenter(reader, "West")  # /F0/West/DC0
        reader.make_folder("VDI/Pools")
        for snapshot in ("v1", "v2"):
            reader.snapshot_parent(source, snapshot)
        duplicate(reader, source, "Archive/Old")

    return Layout(
        name="folders",
        # The datacenter in folder F0 (then moved deeper), two standalone hosts beside the
        # cluster, and a cluster without DRS, so the portal must choose hosts itself.
        sim_options=dict(folder=True, standalone=1, drs=False, datastores=3),
        endpoint=dict(
            datacenter="/F0/West/DC0",
            cluster="DC0_C0",
            vm_folder="VDI/Pools",
            create_vm_folder=False,
        ),
        parent=f"/F0/West/DC0/vm/F0/{source}",
        folder="VDI/Pools",
        pool_datastores=("LocalDS_0", "LocalDS_1", "LocalDS_2"),
        vacate="LocalDS_2",
        prepare=[prepare],
    )


def _nvme_unbrowsable() -> Layout:
    def prepare(reader: Reader):
        parent_with_only(reader, vcsim.PARENT_VM, "Win11-NVMe", "Golden", "nvme")

    return Layout(
        name="nvme",
        sim_options=dict(datastores=3, unbrowsable=("LocalDS_2",)),
        endpoint=dict(vm_folder="VDI/Desktops"),  # made on first use, along its path
        parent="Golden/Win11-NVMe",
        folder="VDI/Desktops",
        bus="nvme",
        prepare=[prepare],
    )


def _sata_fifty_datastores() -> Layout:
    def prepare(reader: Reader):
        parent_with_only(reader, vcsim.PARENT_VM, "Win11-SATA", "Golden", "sata")

    return Layout(
        name="sata-50ds",
        sim_options=dict(datastores=50),
        parent="Win11-SATA",
        pool_datastores=("LocalDS_7", "LocalDS_23", "LocalDS_49"),
        vacate="LocalDS_23",
        bus="sata",
        prepare=[prepare],
    )


LAYOUTS = {
    layout.name: layout
    for layout in (_folders_no_drs(), _nvme_unbrowsable(), _sata_fifty_datastores())
}
