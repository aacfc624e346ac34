"""Reading VMs and datastores: which properties, and how they become the driver's values."""

from __future__ import annotations

from pyVmomi import vim

from composer.drivers.base import POWER_OFF, POWER_ON, DatastoreInfo, VmInfo
from composer.drivers.vsphere import devices

MIB = 1024 * 1024
MARKER_KIND = "vdiportal.kind"
MARKER_REPLICA = "vdiportal.replica"
CHECKPOINT_SNAPSHOT = "vdiportal-checkpoint"
REPLICA_SNAPSHOT = "vdiportal-replica"
PowerState = vim.VirtualMachine.PowerState

# Everything a step needs to know about a VM, read in one round trip.
VM_PROPERTIES = [
    "name",
    "config.extraConfig",
    "config.template",
    "config.hardware.device",
    "config.files.vmPathName",
    "runtime.powerState",
    "datastore",
    "snapshot",
    "summary.storage.committed",
]
DATASTORE_PROPERTIES = ["name", "summary.capacity", "summary.freeSpace", "summary.accessible"]


def marker(props: dict, key: str = MARKER_KIND) -> str:
    # The last one wins: vCenter replaces a key on reconfigure, the simulator appends.
    value = ""
    for option in props.get("config.extraConfig") or []:
        if option.key == key:
            value = str(option.value)
    return value


def snapshots(props: dict) -> list:
    info = props.get("snapshot")
    found, todo = [], list(info.rootSnapshotList if info else [])
    while todo:
        tree = todo.pop()
        found.append(tree)
        todo.extend(tree.childSnapshotList or [])
    return found


def snapshot_named(props: dict, name: str):
    for tree in snapshots(props):
        if tree.name == name:
            return tree.snapshot
    return None


def home_datastore(props: dict) -> str:
    """The datastore holding the VM's configuration (and, for desktops, its delta disk)."""
    path = props.get("config.files.vmPathName") or ""
    if path:
        return devices.datastore_of(path)
    datastores = props.get("datastore") or []
    return datastores[0].name if datastores else ""


def to_info(props: dict, datastore_names: dict | None = None) -> VmInfo:
    kind = marker(props) or "foreign"
    checkpoint = ""
    for tree in snapshots(props):
        if tree.name == CHECKPOINT_SNAPSHOT:
            checkpoint = tree.snapshot._moId
    hardware = props.get("config.hardware.device") or []
    return VmInfo(
        name=props["name"],
        kind="clone" if kind == "desktop" else kind,
        datastore=home_datastore(props),
        power=POWER_ON if props["runtime.powerState"] == PowerState.poweredOn else POWER_OFF,
        replica=marker(props, MARKER_REPLICA),
        delta_mb=int(props.get("summary.storage.committed") or 0) // MIB,
        checkpoint=checkpoint,
        disks=tuple(sorted(devices.disk_name(d) for d in devices.persistent_disks(hardware))),
        ref=props["obj"]._moId,
    )


def to_datastore(row: dict) -> DatastoreInfo:
    return DatastoreInfo(
        row["name"],
        int(row.get("summary.capacity") or 0) // MIB,
        int(row.get("summary.freeSpace") or 0) // MIB,
        ref=row["obj"]._moId,
        accessible=row.get("summary.accessible", True) is not False,
    )
