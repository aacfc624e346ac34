"""The vSphere driver: every operation of the driver interface, against one vCenter.

Each mutating method is idempotent (see base.py): `@journaled` first waits for a task an
earlier attempt left running for the same work, then the method looks whether the work is
already done, and only then starts a vCenter task. Destructive changes come after every check
that can fail (see relink).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
import zlib
from typing import Any

from pyVmomi import vim, vmodl

from composer.drivers.base import (
    CustomizationSpec,
    DatastoreInfo,
    DiskInfo,
    Driver,
    DriverError,
    DriverTimeout,
    Host,
    ImageRef,
    InsufficientSpace,
    InvalidPowerState,
    Inventory,
    NotFound,
    ReplicaInfo,
    Unreachable,
    VmInfo,
)
from composer.drivers.vsphere import devices
from composer.drivers.vsphere import places as places_
from composer.drivers.vsphere.devices import DISK_FOLDER
from composer.drivers.vsphere.inventory import (
    CHECKPOINT_SNAPSHOT,
    DATASTORE_PROPERTIES,
    MARKER_KIND,
    MARKER_REPLICA,
    MIB,
    REPLICA_SNAPSHOT,
    VM_PROPERTIES,
    PowerState,
    home_datastore,
    marker,
    snapshot_named,
    snapshots,
    to_datastore,
    to_info,
)
from composer.drivers.vsphere.lookup import Ambiguous, Lookup, Placement
from composer.drivers.vsphere.session import Session, VSphereConfig
from composer.drivers.vsphere.settings import VSphereSettings
from composer.drivers.vsphere.tasks import MemoryJournal, TaskJournal, Tasks, journaled

log = logging.getLogger(__name__)

# A rebuilt desktop's new delta disk starts empty and grows as the guest writes; a datastore
# with less free space than this would fill up (and suspend every VM on it) soon after.
MIN_FREE_MB = 1024


class VSphereDriver(Driver):
    reports_sessions = False  # see log_off
    holds_session = True  # vCenter caps how many sessions it keeps open

    @classmethod
    def configure(cls, settings: VSphereSettings, host: Host) -> VSphereConfig:
        return settings.config(host.whose)

    @classmethod
    def connect(cls, config: VSphereConfig, host: Host) -> VSphereDriver:
        # In a worker, the session outlives the job: the next job resumes it from the
        # worker's cookie jar (composer/worker.py), one per connection (host, port, user).
        who = f"{config.protocol}://{config.user}@{config.host}:{config.port}"
        jar = host.session_jar(hashlib.sha256(who.encode()).hexdigest()[:16])
        return cls(config, host.journal, jar, host.places)

    def __init__(
        self,
        config: VSphereConfig,
        journal: TaskJournal | None = None,
        jar=None,
        places: places_.PlaceStore | None = None,
    ) -> None:
        self.config = config
        self.session = Session(config, jar)
        self.tasks = Tasks(self.session, journal or MemoryJournal(), config.timeout)
        self.lookup = Lookup(self.session)
        self.places = places
        self._cache: dict[str, Any] = {}
        self._cache_generation = 0
        self._refs: dict[str, str] = {}  # desktop name -> VM id (bind_vm, and what we found)

    @property
    def journal(self) -> TaskJournal:
        return self.tasks.journal

    @property
    def round_trips(self) -> int:
        return self.session.round_trips

    def close(self) -> None:
        self.session.close()
        self._cache = {}

    def _cached(self, key: str, make):
        # Objects belong to the connection they were found on: a new session finds them anew.
        if self._cache_generation != self.session.generation:
            self._cache, self._cache_generation = {}, self.session.generation
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- where the portal works --------------------------------------------------------------

    def _stored(self) -> dict:
        """The places an earlier job found, rebuilt from their ids, if the endpoint's
        settings are the same and every one of them still exists (one round trip)."""

        def load():
            stored = self.places.get() if self.places is not None else None
            if not stored or stored.get("fingerprint") != places_.fingerprint(self.config):
                return {}
            found = places_.load(stored, self.session.stub())
            objs = places_.objects_of(found)
            if not objs:
                return {}
            try:
                rows = self.session.retrieve(places_.existence_spec(objs), "check known places")
            except Unreachable:
                raise
            except DriverError:  # ManagedObjectNotFound: one of them is gone
                rows = []
            if len(rows) != len(objs):
                log.info("vCenter places changed since they were stored: looking them up again")
                return {}
            return found

        return self._cached("stored", load)

    def _place(self, key: str, look_up):
        """A place from the store, else looked up and added to the store."""

        def find():
            stored = self._stored()
            if key in stored:
                return stored[key]
            value = look_up()
            stored[key] = value
            if self.places is not None:
                self.places.put(
                    {"fingerprint": places_.fingerprint(self.config), **places_.dump(stored)}
                )
            return value

        return self._cached(key, find)

    def _datacenter(self):
        return self._place("dc", lambda: self.lookup.datacenter(self.config.datacenter))

    def _folder(self):
        """The portal's VM folder, created along its path on first use if the endpoint says so."""
        return self._place(
            "folder",
            lambda: self.lookup.folder(
                self._datacenter(), self.config.vm_folder, self.config.create_folder
            ),
        )

    def _placement(self) -> Placement:
        return self._place(
            "placement",
            lambda: self.lookup.placement(
                self._datacenter(),
                self.config.cluster,
                self.config.resource_pool,
                self.config.esx_host,
            ),
        )

    def _relocate_spec(self, name: str, datastore: str, **extra) -> vim.vm.RelocateSpec:
        """Where a new VM goes: the datastore (checked to be mounted where the VM will run),
        the resource pool, and a host when vCenter will not choose one (DRS off)."""
        place = self._placement()
        if datastore not in place.datastores:
            raise DriverError(
                f"datastore {datastore} is not mounted on {place.description.split(' (')[0]}; "
                "deselect it for this pool, or mount it on every host there"
            )
        host = None
        if place.hosts:  # spread by name: stable for a retry, even across workers
            host = place.hosts[zlib.crc32(name.encode()) % len(place.hosts)]
        return vim.vm.RelocateSpec(
            datastore=self._datastore(datastore), pool=place.pool, host=host, **extra
        )

    def _datastores(self) -> dict[str, dict]:
        return self._cached(
            "datastores",
            lambda: {
                row["name"]: row
                for row in self.session.read_all(
                    self._datacenter().obj,
                    vim.Datastore,
                    DATASTORE_PROPERTIES,
                    what="list datastores",
                )
            },
        )

    def _datastore(self, name: str):
        """The datastore `name`, by the id stored for it, else from one listing of them all
        (whose ids are then stored)."""
        ids = self._place(
            "datastore_ids", lambda: {n: row["obj"] for n, row in self._datastores().items()}
        )
        if name not in ids:
            self._cache.pop("datastores", None)  # added since we looked: look again, once
            ids.update({n: row["obj"] for n, row in self._datastores().items()})
            if name in ids and self.places is not None:
                self.places.put(
                    {
                        "fingerprint": places_.fingerprint(self.config),
                        **places_.dump(self._stored()),
                    }
                )
        if name not in ids:
            raise NotFound(f"datastore {name} not found in datacenter {self._datacenter().path}")
        return ids[name]

    def datastore(self, name: str) -> DatastoreInfo:
        """One datastore's figures, in one round trip."""
        return to_datastore(
            self.session.read(self._datastore(name), DATASTORE_PROPERTIES, f"read datastore {name}")
        )

    def test_connection(self) -> str:
        """Log in and check, item by item, everything the endpoint names. Creates nothing."""
        try:
            about = self.session.call("connect", lambda: self.session.content.about)
        except DriverError as exc:
            if not isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                raise
            # Name the certificate, so the administrator can check it is vCenter's own
            # before trusting its CA.
            raise DriverError(
                f"{exc}; the server's certificate: {self.session.fingerprint()}"
            ) from exc
        dc = self._datacenter()
        place = self._placement()
        every = self.datastores()
        mounted = [d for d in every if d.name in place.datastores]
        unmounted = sorted(d.name for d in every if d.name not in place.datastores)
        try:
            folder = self.lookup.folder(dc, self.config.vm_folder, create=False)
            folder_text = f"folder {self.lookup.path_of(folder)} exists"
        except NotFound:
            if not self.config.create_folder:
                raise
            folder_text = f"folder {self.config.vm_folder} does not exist yet: created on first use"
        return (
            f"Connected to {about.fullName} (API {about.apiVersion}) at {self.config.where} "
            f"as {self.config.user}: datacenter {dc.path}; {place.description}; "
            f"{len(mounted)} of {len(every)} datastore(s) mounted there"
            + (f" (not {', '.join(unmounted)})" if unmounted else "")
            + f"; {folder_text}."
        )

    # -- finding VMs -----------------------------------------------------------------------

    def bind_vm(self, name: str, ref: str) -> None:
        if ref:
            self._refs[name] = ref

    def _read_vm(self, obj, what: str) -> dict:
        return self.session.read(obj, VM_PROPERTIES, what)

    def _find_in_folder(self, name: str):
        return self.session.call(
            f"find {name}",
            lambda: self.session.content.searchIndex.FindChild(entity=self._folder(), name=name),
        )

    def _vm_or_none(self, name: str) -> dict | None:
        """The properties of the portal's VM `name`: by its id when the composer bound one (so
        a VM moved to another folder is still found), else by name in the portal's folder."""
        ref = self._refs.get(name)
        if ref:
            try:
                props = self._read_vm(vim.VirtualMachine(ref, stub=self.session.stub()), name)
                if marker(props):
                    return props
            except NotFound:
                pass  # gone, or re-registered under a new id: look it up by name
        found = self._find_in_folder(name)
        if found is None:
            return None
        props = self._read_vm(found, f"read {name}")
        self._refs[name] = found._moId
        return props

    def _vm(self, name: str) -> dict:
        props = self._vm_or_none(name)
        if props is None:
            raise NotFound(
                f"VM {name} not found in vCenter folder {self.config.vm_folder} "
                "(deleted outside the portal?)"
            )
        return props

    def _owned(self, name: str, kind: str) -> dict | None:
        """Our VM `name` of `kind`, None if there is none; DriverError if the name is taken in
        the portal's folder by something else."""
        found = self._find_in_folder(name)
        if found is None:
            return None
        props = self._read_vm(found, f"read {name}")
        if marker(props) != kind:
            raise DriverError(
                f"the name {name} is already taken in vCenter folder {self.config.vm_folder} "
                "by a VM the portal did not create; rename or remove it there"
            )
        return props

    # -- inventory -------------------------------------------------------------------------

    def datastores(self) -> list[DatastoreInfo]:
        self._cache.pop("datastores", None)  # fresh figures
        return sorted((to_datastore(r) for r in self._datastores().values()), key=lambda d: d.name)

    def inventory(self) -> Inventory:
        """Datastores and the portal's VMs (anywhere under its folder) in a constant number of
        round trips, whatever their number. Disks are those attached to the VMs: detached ones
        are known by the path the portal recorded, and no datastore is browsed."""
        rows = self.session.read_all(
            self._folder(), vim.VirtualMachine, VM_PROPERTIES, what="list VMs"
        )
        vms = [to_info(p) for p in rows if marker(p)]
        disks = []
        for props, vm in zip((p for p in rows if marker(p)), vms, strict=True):
            for device in devices.persistent_disks(props.get("config.hardware.device")):
                disks.append(
                    DiskInfo(
                        devices.disk_name(device),
                        devices.datastore_of(device.backing.fileName),
                        int(device.capacityInKB or 0) // 1024,
                        vm.name,
                    )
                )
        return Inventory(datastores=self.datastores(), vms=vms, disks=disks)

    def get_vm(self, name: str) -> VmInfo:
        return to_info(self._vm(name))

    def describe_image(self, parent_vm: str, snapshot: str, parent_ref: str = "") -> ImageRef:
        props = self._parent(ImageRef(parent_vm, snapshot, 0, 0, parent_ref=parent_ref))
        parent = props["obj"]
        snap = self._parent_snapshot(props, parent_vm, snapshot, "")
        system = devices.system_disks(props.get("config.hardware.device"))
        if not system:
            raise DriverError(f"parent VM {parent_vm} has no disk to clone")
        disk_mb = sum(int(d.capacityInKB or 0) for d in system) // 1024
        used_mb = min(int(props.get("summary.storage.committed") or 0) // MIB, disk_mb) or disk_mb
        return ImageRef(
            parent_vm=parent_vm,
            snapshot=snapshot,
            disk_mb=disk_mb,
            used_mb=used_mb,
            parent_ref=parent._moId,
            snapshot_ref=snap._moId,
        )

    def _parent_snapshot(self, props: dict, parent_vm: str, snapshot: str, ref: str):
        trees = snapshots(props)
        if ref:
            found = [t.snapshot for t in trees if t.snapshot._moId == ref]
        else:
            found = [t.snapshot for t in trees if t.name == snapshot]
        if not found:
            raise NotFound(f"snapshot {snapshot} of {parent_vm} not found in vCenter")
        if len(found) > 1:
            raise Ambiguous(
                f"{parent_vm} has {len(found)} snapshots named {snapshot}; rename them in "
                "vCenter so each image version names one"
            )
        return found[0]

    def _parent(self, image: ImageRef) -> dict:
        if image.parent_ref:
            try:
                return self._read_vm(
                    vim.VirtualMachine(image.parent_ref, stub=self.session.stub()),
                    f"read parent VM {image.parent_vm}",
                )
            except NotFound as exc:
                raise NotFound(
                    f"parent VM {image.parent_vm} ({image.parent_ref}) of the image no longer "
                    "exists in vCenter; register the image again"
                ) from exc
        try:
            found = self.lookup.vm(self._datacenter(), image.parent_vm)
        except NotFound as exc:
            raise NotFound(
                f"parent VM {image.parent_vm} of the image not found in vCenter"
            ) from exc
        return self._read_vm(found, f"read parent VM {image.parent_vm}")

    # -- replicas --------------------------------------------------------------------------

    @journaled("replica:{name}")
    def clone_replica(self, image: ImageRef, datastore: str, name: str) -> ReplicaInfo:
        props = self._owned(name, "replica")
        if props is None:
            parent = self._parent(image)
            snap = self._parent_snapshot(
                parent, image.parent_vm, image.snapshot, image.snapshot_ref
            )
            spec = vim.vm.CloneSpec(
                location=self._relocate_spec(name, datastore),
                snapshot=snap,
                powerOn=False,
                template=False,
                config=vim.vm.ConfigSpec(
                    annotation=(
                        f"VDI portal replica of {image.parent_vm} @ {image.snapshot}. "
                        "Do not power on."
                    ),
                    extraConfig=[vim.option.OptionValue(key=MARKER_KIND, value="replica")],
                ),
            )
            try:
                self.tasks.run(
                    f"clone replica {name} on {datastore}",
                    lambda: parent["obj"].CloneVM_Task(folder=self._folder(), name=name, spec=spec),
                )
            except DriverError:
                # Another worker may have cloned the same replica at the same moment (two
                # operations needing it): vCenter refuses the second clone's name. Theirs
                # will do; anything else is a real failure.
                if self._owned(name, "replica") is None:
                    raise
            props = self._owned(name, "replica")
        vm = props["obj"]
        if snapshot_named(props, REPLICA_SNAPSHOT) is None:
            if props.get("config.template"):
                raise DriverError(
                    f"replica {name} is a template without its snapshot; delete it in vCenter"
                )
            self.tasks.run(
                f"snapshot replica {name}",
                lambda: vm.CreateSnapshot_Task(
                    name=REPLICA_SNAPSHOT, description="", memory=False, quiesce=False
                ),
                key=f"snapshot:{name}",
            )
        if not props.get("config.template"):
            # A template cannot be powered on: nobody starts the replica by mistake.
            self.session.call(f"mark replica {name} as template", vm.MarkAsTemplate)
        size_mb = int(props.get("summary.storage.committed") or 0) // MIB or image.used_mb
        return ReplicaInfo(
            name=name, datastore=datastore, size_mb=size_mb, snapshot=REPLICA_SNAPSHOT
        )

    @journaled("destroy:{name}")
    def delete_replica(self, name: str) -> None:
        props = self._owned(name, "replica")
        if props is not None:
            self.tasks.run(f"delete replica {name}", props["obj"].Destroy_Task)

    def _replica(self, replica: ReplicaInfo) -> dict:
        source = self._find_in_folder(replica.name)
        if source is None:
            raise NotFound(f"replica {replica.name} not found in vCenter")
        return self._read_vm(source, f"read replica {replica.name}")

    # -- desktops --------------------------------------------------------------------------

    @journaled("clone:{name}")
    def create_linked_clone(self, name: str, replica: ReplicaInfo, datastore: str) -> VmInfo:
        props = self._owned(name, "desktop")
        if props is None:
            source = self._replica(replica)
            snap = snapshot_named(source, replica.snapshot)
            if snap is None:
                raise NotFound(f"snapshot {replica.snapshot} of replica {replica.name} not found")
            spec = vim.vm.CloneSpec(
                location=self._relocate_spec(
                    name, datastore, diskMoveType="createNewChildDiskBacking"
                ),
                snapshot=snap,
                powerOn=False,
                template=False,
                config=vim.vm.ConfigSpec(
                    extraConfig=[
                        vim.option.OptionValue(key=MARKER_KIND, value="desktop"),
                        vim.option.OptionValue(key=MARKER_REPLICA, value=replica.name),
                    ]
                ),
            )
            self.tasks.run(
                f"clone {name} from {replica.name}",
                lambda: source["obj"].CloneVM_Task(folder=self._folder(), name=name, spec=spec),
            )
            props = self._owned(name, "desktop")
        self._refs[name] = props["obj"]._moId
        return to_info(props)

    def _customization(self, vm_props: dict, spec: CustomizationSpec):
        nics = [
            d
            for d in vm_props.get("config.hardware.device") or []
            if isinstance(d, vim.vm.device.VirtualEthernetCard)
        ]
        if self.config.customization_spec:
            # The saved spec carries the domain join account, kept in vCenter, not here.
            item = self.session.call(
                f"read customization spec {self.config.customization_spec}",
                lambda: self.session.content.customizationSpecManager.GetCustomizationSpec(
                    name=self.config.customization_spec
                ),
            )
            custom = item.spec
            identity = custom.identity
            if isinstance(identity, vim.vm.customization.Sysprep):
                identity.userData.computerName = vim.vm.customization.FixedName(
                    name=spec.computer_name
                )
            elif isinstance(identity, vim.vm.customization.LinuxPrep):
                identity.hostName = vim.vm.customization.FixedName(name=spec.computer_name)
            return custom
        mapping = vim.vm.customization.AdapterMapping(
            adapter=vim.vm.customization.IPSettings(ip=vim.vm.customization.DhcpIpGenerator())
        )
        return vim.vm.customization.Specification(
            identity=vim.vm.customization.Sysprep(
                guiUnattended=vim.vm.customization.GuiUnattended(
                    autoLogon=False, autoLogonCount=0, timeZone=85
                ),
                userData=vim.vm.customization.UserData(
                    computerName=vim.vm.customization.FixedName(name=spec.computer_name),
                    fullName="VDI",
                    orgName="VDI",
                    productId="",
                ),
                identification=vim.vm.customization.Identification(joinWorkgroup="WORKGROUP"),
            ),
            globalIPSettings=vim.vm.customization.GlobalIPSettings(),
            nicSettingMap=[mapping for _ in nics],
        )

    @journaled("customize:{name}")
    def customize(self, name: str, spec: CustomizationSpec) -> None:
        # vCenter refuses it while the VM is on (InvalidPowerState), and refuses a second one
        # before the first boot (CustomizationPending): that one is this desktop's own, from an
        # earlier attempt (same name and domain), and applies at the next power-on, so a
        # retry finds the work done.
        props = self._vm(name)
        custom = self._customization(props, spec)
        try:
            self.tasks.run(f"customize {name}", lambda: props["obj"].CustomizeVM_Task(spec=custom))
        except DriverError as exc:
            if not isinstance(exc.__cause__, vim.fault.CustomizationPending):
                raise
            log.info("customize %s: a customization is pending already", name)

    @journaled("checkpoint:{name}")
    def checkpoint(self, name: str) -> str:
        props = self._vm(name)
        snap = snapshot_named(props, CHECKPOINT_SNAPSHOT)
        if snap is None:
            snap = self.tasks.run(
                f"checkpoint {name}",
                lambda: props["obj"].CreateSnapshot_Task(
                    name=CHECKPOINT_SNAPSHOT,
                    description="after customization",
                    memory=False,
                    quiesce=False,
                ),
            )
        return snap._moId

    @journaled("revert:{name}")
    def revert(self, name: str, checkpoint: str) -> None:
        props = self._vm(name)
        snap = next((t.snapshot for t in snapshots(props) if t.snapshot._moId == checkpoint), None)
        if snap is None:
            raise NotFound(
                f"checkpoint {checkpoint} of {name} not found in vCenter: recompose the desktop"
            )
        # Reverting twice is the same as once: nothing to check before.
        self.tasks.run(f"revert {name}", lambda: snap.RevertToSnapshot_Task(suppressPowerOn=True))

    @journaled("relink:{name}")
    def relink(self, name: str, replica: ReplicaInfo) -> None:
        """Swap the desktop's delta disk for a new child of the replica's base disk.

        First every check that can fail: the VM is off, the replica and its snapshot exist,
        its disks pair up with the VM's, the datastore is reachable with room. Then the
        snapshots are removed (consolidating: the VM still boots from its old delta), and
        one reconfiguration removes the old delta and adds the new one in the same slot,
        which vCenter applies whole or not at all. So a failure at any point leaves a VM
        with a bootable system disk, and running this again rebuilds it again.
        """
        props = self._vm(name)
        if props["runtime.powerState"] != PowerState.poweredOff:
            raise InvalidPowerState(f"relink {name}: the VM must be powered off first")
        source = self._replica(replica)
        if snapshot_named(source, replica.snapshot) is None:
            raise NotFound(f"snapshot {replica.snapshot} of replica {replica.name} not found")
        base = devices.system_disks(source.get("config.hardware.device"))
        if not base:
            raise DriverError(f"replica {replica.name} has no system disk")
        here = home_datastore(props)
        replica_home = devices.datastore_of(devices.snapshot_file(base[0]))
        if replica_home != here:
            raise DriverError(
                f"replica {replica.name} is on {replica_home}, {name} on {here}: a linked "
                "clone reads from a replica on its own datastore"
            )
        room = self.datastore(here)
        if not room.accessible:
            raise DriverError(f"datastore {here} is not accessible from vCenter now")
        if room.free_mb < MIN_FREE_MB:
            raise InsufficientSpace(
                f"relink {name}: datastore {here} has less than {MIN_FREE_MB} MiB free"
            )
        directory = devices.vm_directory(
            props.get("config.files.vmPathName") or f"[{here}] {name}/"
        )
        # Checked now, before anything changes (raises when the disks do not pair up).
        devices.swap_system_disks(name, props.get("config.hardware.device"), base, directory)
        vm = props["obj"]
        if props.get("snapshot"):
            self.tasks.run(
                f"remove snapshots of {name}",
                vm.RemoveAllSnapshots_Task,
                key=f"remove-snapshots:{name}",
            )
            props = self._read_vm(vm, f"read {name}")  # the consolidated disks
        change = devices.swap_system_disks(
            name, props.get("config.hardware.device"), base, directory
        )
        marker_value = vim.option.OptionValue(key=MARKER_REPLICA, value=replica.name)
        self.tasks.run(
            f"link {name} to {replica.name}",
            lambda: vm.ReconfigVM_Task(
                spec=vim.vm.ConfigSpec(deviceChange=change, extraConfig=[marker_value])
            ),
        )

    @journaled("destroy:{name}")
    def delete_vm(self, name: str) -> None:
        props = self._vm_or_none(name)
        if props is None:
            return
        if marker(props) != "desktop":
            raise DriverError(
                f"VM {name} in vCenter was not created by the portal; not deleting it"
            )
        if props["runtime.powerState"] != PowerState.poweredOff:
            self.power_off(name)
        # Destroy deletes every attached disk file: a persistent disk left attached by
        # mistake is detached first, so it is never lost with the VM.
        for disk in devices.persistent_disks(props.get("config.hardware.device")):
            self.detach_disk(name, devices.disk_name(disk))
        self.tasks.run(f"delete {name}", props["obj"].Destroy_Task)
        self._refs.pop(name, None)

    @journaled("relocate:{name}")
    def move_vm(self, name: str, datastore: str) -> None:
        props = self._vm(name)
        if home_datastore(props) == datastore:
            return
        target = self._datastore(datastore)
        place = self._placement()
        if datastore not in place.datastores:
            raise DriverError(f"datastore {datastore} is not mounted on {place.description}")
        # Attached persistent disks move with the VM (steps detach them first; this keeps
        # the two together should a disk still be attached).
        locators = [
            vim.vm.RelocateSpec.DiskLocator(diskId=d.key, datastore=target)
            for d in devices.persistent_disks(props.get("config.hardware.device"))
        ]
        spec = vim.vm.RelocateSpec(datastore=target, disk=locators or None)
        self.tasks.run(
            f"move {name} to {datastore}", lambda: props["obj"].RelocateVM_Task(spec=spec)
        )

    # -- persistent disks ------------------------------------------------------------------

    @staticmethod
    def _disk_path(datastore: str, disk: str) -> str:
        return f"[{datastore}] {DISK_FOLDER}/{disk}.vmdk"

    def _disk_exists(self, datastore: str, disk: str) -> bool:
        """One call on the one datastore the portal recorded: no datastore is browsed."""
        path = self._disk_path(datastore, disk)
        try:
            self.session.call(
                f"look for disk {path}",
                lambda: self.session.content.virtualDiskManager.QueryVirtualDiskUuid(
                    name=path, datacenter=self._datacenter().obj
                ),
            )
        except NotFound:
            return False
        except DriverError as exc:
            if isinstance(exc.__cause__, vim.fault.FileNotFound | vim.fault.CannotAccessFile):
                return False
            raise
        return True

    def _make_directory(self, datastore: str, folder: str) -> None:
        try:
            self.session.call(
                f"create folder {folder} on {datastore}",
                lambda: self.session.content.fileManager.MakeDirectory(
                    name=f"[{datastore}] {folder}",
                    datacenter=self._datacenter().obj,
                    createParentDirectories=True,
                ),
            )
        except DriverError as exc:
            if not isinstance(exc.__cause__, vim.fault.FileAlreadyExists):
                raise

    @journaled("create-disk:{name}")
    def create_disk(self, name: str, datastore: str, size_mb: int) -> DiskInfo:
        if not self._disk_exists(datastore, name):
            self._make_directory(datastore, DISK_FOLDER)
            spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
                capacityKb=size_mb * 1024, adapterType="lsiLogic", diskType="thin"
            )
            self.tasks.run(
                f"create disk {name} on {datastore}",
                lambda: self.session.content.virtualDiskManager.CreateVirtualDisk_Task(
                    name=self._disk_path(datastore, name),
                    datacenter=self._datacenter().obj,
                    spec=spec,
                ),
            )
        return DiskInfo(name=name, datastore=datastore, size_mb=size_mb)

    @journaled("attach:{vm}:{disk}")
    def attach_disk(self, vm: str, disk: str, datastore: str) -> None:
        props = self._vm(vm)
        hardware = props.get("config.hardware.device")
        if devices.device_for(hardware, disk) is not None:
            return
        if not self._disk_exists(datastore, disk):
            raise NotFound(
                f"persistent disk {disk} not found at {self._disk_path(datastore, disk)}, "
                "where the portal recorded it"
            )
        change = devices.attach_spec(hardware, vm, self._disk_path(datastore, disk))
        self.tasks.run(
            f"attach disk {disk} to {vm}",
            lambda: props["obj"].ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])),
        )

    @journaled("detach:{vm}:{disk}")
    def detach_disk(self, vm: str, disk: str) -> None:
        props = self._vm_or_none(vm)
        if props is None:
            return  # the VM is gone: the disk is attached to nothing
        device = devices.device_for(props.get("config.hardware.device"), disk)
        if device is None:
            return
        # No fileOperation: the device goes, the file stays.
        change = vim.vm.device.VirtualDeviceSpec(operation="remove", device=device)
        self.tasks.run(
            f"detach disk {disk} from {vm}",
            lambda: props["obj"].ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])),
        )

    @journaled("move-disk:{disk}")
    def move_disk(self, disk: str, source: str, target: str) -> None:
        if self._disk_exists(target, disk):
            return  # moved already (a retry), or never needed to move
        if source == target or not self._disk_exists(source, disk):
            raise NotFound(
                f"persistent disk {disk} not found at {self._disk_path(source, disk)}, "
                "where the portal recorded it"
            )
        self._make_directory(target, DISK_FOLDER)
        self.tasks.run(
            f"move disk {disk} to {target}",
            lambda: self.session.content.virtualDiskManager.MoveVirtualDisk_Task(
                sourceName=self._disk_path(source, disk),
                sourceDatacenter=self._datacenter().obj,
                destName=self._disk_path(target, disk),
                destDatacenter=self._datacenter().obj,
                force=False,
            ),
        )

    @journaled("delete-disk:{disk}")
    def delete_disk(self, disk: str, datastore: str) -> None:
        if not self._disk_exists(datastore, disk):
            return
        self.tasks.run(
            f"delete disk {disk}",
            lambda: self.session.content.virtualDiskManager.DeleteVirtualDisk_Task(
                name=self._disk_path(datastore, disk), datacenter=self._datacenter().obj
            ),
        )

    # -- power and sessions ----------------------------------------------------------------

    def _power(self, name: str) -> tuple[Any, str]:
        props = self._vm(name)
        return props["obj"], props["runtime.powerState"]

    @journaled("power:{name}")
    def power_on(self, name: str) -> None:
        vm, state = self._power(name)
        if state != PowerState.poweredOn:
            self.tasks.run(f"power on {name}", vm.PowerOnVM_Task)

    @journaled("power:{name}")
    def power_off(self, name: str) -> None:
        vm, state = self._power(name)
        if state != PowerState.poweredOff:
            self.tasks.run(f"power off {name}", vm.PowerOffVM_Task)

    def _wait_power(self, name: str, state: str, what: str) -> None:
        deadline = time.monotonic() + self.config.timeout
        while self._power(name)[1] != state:
            if time.monotonic() >= deadline:
                raise DriverTimeout(
                    f"{what}: the guest did not finish within {self.config.timeout:g} s"
                )
            time.sleep(0.5)

    def shutdown(self, name: str) -> None:
        vm, state = self._power(name)
        if state == PowerState.poweredOff:
            return
        self.session.call(f"shut down {name}", vm.ShutdownGuest)  # needs VMware Tools
        self._wait_power(name, PowerState.poweredOff, f"shut down {name}")

    def restart(self, name: str) -> None:
        vm, state = self._power(name)
        if state != PowerState.poweredOn:
            self.power_on(name)
            return
        # A guest reboot needs VMware Tools; a reset is the hard fallback.
        try:
            self.session.call(f"restart {name}", vm.RebootGuest)
        except DriverError as exc:
            cause = exc.__cause__
            if not isinstance(
                cause,
                vim.fault.ToolsUnavailable | vmodl.fault.NotSupported | vmodl.fault.MethodNotFound,
            ):
                raise
            self.tasks.run(f"reset {name}", vm.ResetVM_Task, key=f"power:{name}")

    def log_off(self, name: str) -> None:
        # vCenter sees no user sessions; they belong to the desktop agent's protocol.
        raise DriverError(
            f"log off {name}: vCenter has no API for user sessions; log the user off from the "
            "desktop agent, or restart the desktop"
        )

    def send_message(self, name: str, text: str) -> None:
        # No session is ever reported on vSphere (see log_off), and "no session" is no error.
        log.info("message for %s not delivered: vSphere reports no sessions", name)
