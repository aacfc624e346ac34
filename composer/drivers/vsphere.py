"""VMware vSphere through vCenter's API (pyvmomi).

How the portal's objects map onto vSphere:

- Everything the portal creates lives in one VM folder (`vm_folder`, default "vdi-portal")
  and carries a marker in its extraConfig, set atomically by the clone itself:
  `vdiportal.kind` = "replica" or "desktop" (and `vdiportal.replica` on desktops). The folder
  makes names unique and lookups cheap (SearchIndex.FindChild); the marker tells the portal's
  VMs from anything else an administrator puts there.
- A replica is a full clone of the image's parent VM at its snapshot, with one snapshot of its
  own (REPLICA_SNAPSHOT) to clone from, then marked as a template so nobody powers it on.
- A desktop is a linked clone of a replica's snapshot (diskMoveType
  "createNewChildDiskBacking"). Its checkpoint is a snapshot taken after customization;
  refresh reverts to it. Recompose removes the delta disk and adds a new child disk of the
  new replica's base disk, so the VM (name, MAC, BIOS UUID) stays.
- Persistent disks are independent-persistent virtual disks in the datastore folder
  DISK_FOLDER, attached and detached with ReconfigVM_Task without touching the file; being
  independent, snapshot revert never touches them.

Every mutating method is idempotent (see base.py): it first waits for a task the journal says
is still under way for the same work, then looks whether the work is already done, and only
then starts a vCenter task, whose id goes into the journal until it ends.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from composer.drivers.base import (
    POWER_OFF,
    POWER_ON,
    CustomizationSpec,
    DatastoreInfo,
    DiskInfo,
    Driver,
    DriverError,
    DriverTimeout,
    ImageRef,
    InsufficientSpace,
    InvalidPowerState,
    Inventory,
    NotFound,
    ReplicaInfo,
    VmInfo,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MARKER_KIND = "vdiportal.kind"
MARKER_REPLICA = "vdiportal.replica"
REPLICA_SNAPSHOT = "vdiportal-replica"
CHECKPOINT_SNAPSHOT = "vdiportal-checkpoint"
DISK_FOLDER = "vdiportal-disks"
CALL_TIMEOUT = 60.0  # seconds one API call may take (a task may take the endpoint's timeout)
PowerState = vim.VirtualMachine.PowerState
POWER_WORDS = {"poweredOn": "powered on", "poweredOff": "powered off", "suspended": "suspended"}


@dataclass(frozen=True)
class VSphereConfig:
    """Where and how to reach one vCenter (built from a HypervisorEndpoint row)."""

    host: str
    user: str
    password: str
    port: int = 443
    protocol: str = "https"
    verify_tls: bool = True
    ca_bundle: str = ""
    datacenter: str = ""
    cluster: str = ""
    vm_folder: str = "vdi-portal"
    customization_spec: str = ""
    timeout: float = 900.0

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


class TaskJournal(Protocol):
    """Where task ids are kept while their tasks run (composer.task_journal in the portal)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, task_id: str) -> None: ...

    def drop(self, key: str) -> None: ...


class MemoryJournal:
    """A journal for one process (command-line use and tests of the driver alone)."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.tasks.get(key)

    def put(self, key: str, task_id: str) -> None:
        self.tasks[key] = task_id

    def drop(self, key: str) -> None:
        self.tasks.pop(key, None)


# -- faults ------------------------------------------------------------------------------


def translate(exc: BaseException, what: str) -> DriverError:
    """A vSphere fault or connection failure as a driver error an administrator understands.

    `what` names the call, e.g. "clone VDI-001".
    """
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, vim.fault.DuplicateName):
        return DriverError(f"{what}: the name {exc.name or ''} is already taken in vCenter")
    if isinstance(exc, vim.fault.InvalidPowerState):
        state = POWER_WORDS.get(exc.existingState or "", "in a power state")
        return InvalidPowerState(
            f"{what}: the VM is {state} and this step cannot work on it that way "
            "(was it powered on or off outside the portal?)"
        )
    if isinstance(exc, vmodl.fault.ManagedObjectNotFound):
        return NotFound(
            f"{what}: the object no longer exists in vCenter (deleted outside the portal?)"
        )
    if isinstance(exc, vim.fault.FileNotFound):
        return NotFound(f"{what}: file {exc.file or ''} not found on the datastore")
    if isinstance(exc, vim.fault.NoDiskSpace | vim.fault.InsufficientDisks):
        return InsufficientSpace(f"{what}: not enough space on the datastore ({exc.msg})")
    if isinstance(exc, vim.fault.InsufficientResourcesFault):
        return DriverError(
            f"{what}: vCenter has not enough CPU or memory to admit it "
            f"({exc.msg or 'insufficient resources'})"
        )
    if isinstance(exc, vim.fault.NoPermission):
        return DriverError(
            f"{what}: the service account lacks the privilege {exc.privilegeId or '(unknown)'}"
            " in vCenter; see README, 'Pointing the portal at vCenter'"
        )
    if isinstance(exc, vim.fault.InvalidLogin):
        return DriverError(f"{what}: vCenter refused the login: wrong user name or password")
    if isinstance(exc, vim.fault.NotAuthenticated):
        return DriverError(f"{what}: the vCenter session expired; the next try logs in again")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or exc
        return DriverError(
            f"{what}: vCenter's certificate could not be verified ({reason}); "
            "set the endpoint's CA bundle to the CA that signed it"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return DriverTimeout(f"{what}: vCenter did not answer in time")
    if isinstance(exc, ssl.SSLError):
        return DriverError(f"{what}: TLS failed talking to vCenter ({exc.reason or exc})")
    if isinstance(exc, ConnectionError | socket.gaierror | OSError):
        return DriverError(f"{what}: cannot reach vCenter ({exc.strerror or exc})")
    if isinstance(exc, vmodl.MethodFault):
        kind = type(exc).__name__.rpartition(".")[2]
        return DriverError(f"{what}: vCenter reported {kind}: {exc.msg or ''}".rstrip(": "))
    return DriverError(f"{what}: {type(exc).__name__}: {exc}")


def _spec(obj_type, path_set: list[str], container=None, *, obj=None):
    """A property-collector filter: `path_set` of one object, or of every `obj_type` in a view."""
    PC = vmodl.query.PropertyCollector
    if obj is not None:
        object_set = [PC.ObjectSpec(obj=obj)]
    else:
        object_set = [
            PC.ObjectSpec(
                obj=container,
                skip=True,
                selectSet=[
                    PC.TraversalSpec(
                        name="view", path="view", skip=False, type=vim.view.ContainerView
                    )
                ],
            )
        ]
    return PC.FilterSpec(
        objectSet=object_set, propSet=[PC.PropertySpec(type=obj_type, pathSet=path_set)]
    )


class VSphereDriver(Driver):
    reports_sessions = False  # see log_off

    def __init__(self, config: VSphereConfig, journal: TaskJournal | None = None) -> None:
        self.config = config
        self.journal = journal or MemoryJournal()
        self._si = None
        self._cache: dict[str, Any] = {}

    # -- connection ------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.protocol != "https":
            return None
        if not self.config.verify_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.config.ca_bundle or None)

    def _connect(self):
        if self._si is None:
            try:
                self._si = SmartConnect(
                    protocol=self.config.protocol,
                    host=self.config.host,
                    port=self.config.port,
                    user=self.config.user,
                    pwd=self.config.password,
                    sslContext=self._ssl_context(),
                    disableSslCertValidation=not self.config.verify_tls,
                    # One API call answers quickly (tasks run on after it returns, and are
                    # awaited up to the task timeout), so a silent vCenter is noticed soon.
                    httpConnectionTimeout=min(self.config.timeout, CALL_TIMEOUT),
                )
            except Exception as exc:
                raise translate(exc, f"connect to {self.config.where}") from exc
        return self._si

    def close(self) -> None:
        if self._si is not None:
            try:
                Disconnect(self._si)
            except Exception:  # the session may already be gone; nothing to clean up then
                pass
        self._si, self._cache = None, {}

    @property
    def content(self):
        if "content" not in self._cache:
            self._cache["content"] = self._connect().RetrieveContent()
        return self._cache["content"]

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one API call, translating faults.

        vCenter ends sessions idle for 30 minutes, and a kept-alive connection may have been
        closed at the other end: both are refused before anything happens, so the call is
        retried once after logging in again on the same connection (objects already looked
        up stay valid). A timeout is not retried: the call may be under way.
        """
        for attempt in (1, 2):
            try:
                return fn()
            except DriverError:
                raise
            except (vim.fault.NotAuthenticated, ConnectionResetError, BrokenPipeError) as exc:
                if attempt == 2 or self._si is None:
                    self.close()
                    raise translate(exc, what) from exc
                log.info("%s: %s; logging in again", what, type(exc).__name__)
                try:
                    self.content.sessionManager.Login(
                        userName=self.config.user, password=self.config.password
                    )
                except vim.fault.InvalidLogin as login:
                    raise translate(login, what) from login
                except Exception:  # the connection itself is gone: start afresh next time
                    self.close()
                    raise translate(exc, what) from exc
            except TimeoutError as exc:
                self.close()  # the answer may still arrive on this socket: do not reuse it
                raise translate(exc, what) from exc
            except Exception as exc:
                raise translate(exc, what) from exc
        raise AssertionError("unreachable")

    def test_connection(self) -> str:
        """Log in and look around; a one-line summary, or DriverError saying what is wrong."""
        try:
            about = self._call("connect", lambda: self.content.about)
        except DriverError as exc:
            if not isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                raise
            # Name the certificate, so the administrator can check it is vCenter's own
            # before trusting its CA.
            raise DriverError(f"{exc}; the server's certificate: {self._fingerprint()}") from exc
        datastores = self.datastores()
        self._folder()
        return (
            f"Connected to {about.fullName} (API {about.apiVersion}) at {self.config.where} "
            f"as {self.config.user}; datacenter {self._datacenter().name}, "
            f"{len(datastores)} datastore(s), folder {self.config.vm_folder}."
        )

    def _fingerprint(self) -> str:
        try:
            pem = ssl.get_server_certificate((self.config.host, self.config.port), timeout=10)
        except OSError as exc:
            return f"not readable ({exc})"
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
        return "SHA-256 " + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    # -- inventory lookups -----------------------------------------------------------------

    def _datacenter(self):
        if "dc" not in self._cache:

            def find():
                for entity in self.content.rootFolder.childEntity:
                    if isinstance(entity, vim.Datacenter) and (
                        not self.config.datacenter or entity.name == self.config.datacenter
                    ):
                        return entity
                raise NotFound(
                    f"datacenter {self.config.datacenter or '(any)'} not found in vCenter"
                )

            self._cache["dc"] = self._call("find datacenter", find)
        return self._cache["dc"]

    def _resource_pool(self):
        if "pool" not in self._cache:

            def find():
                view = self.content.viewManager.CreateContainerView(
                    self._datacenter().hostFolder, [vim.ComputeResource], True
                )
                try:
                    for cluster in view.view:
                        if not self.config.cluster or cluster.name == self.config.cluster:
                            return cluster.resourcePool
                finally:
                    view.Destroy()
                raise NotFound(f"cluster {self.config.cluster or '(any)'} not found in vCenter")

            self._cache["pool"] = self._call("find cluster", find)
        return self._cache["pool"]

    def _folder(self):
        """The portal's VM folder, created on first use."""
        if "folder" not in self._cache:
            name = self.config.vm_folder

            def find():
                parent = self._datacenter().vmFolder
                found = self.content.searchIndex.FindChild(entity=parent, name=name)
                if found is not None:
                    return found
                try:
                    return parent.CreateFolder(name=name)
                except vim.fault.DuplicateName:  # another worker made it just now
                    return self.content.searchIndex.FindChild(entity=parent, name=name)

            self._cache["folder"] = self._call(f"open folder {name}", find)
        return self._cache["folder"]

    def _find_vm(self, name: str):
        """The VM `name` in the portal's folder, or None."""
        return self._call(
            f"find {name}",
            lambda: self.content.searchIndex.FindChild(entity=self._folder(), name=name),
        )

    def _vm(self, name: str):
        vm = self._find_vm(name)
        if vm is None:
            raise NotFound(
                f"VM {name} not found in vCenter folder {self.config.vm_folder} "
                "(deleted outside the portal?)"
            )
        return vm

    def _datastore(self, name: str):
        for ds in self._call("list datastores", lambda: self._datacenter().datastore):
            if ds.name == name:
                return ds
        raise NotFound(f"datastore {name} not found in vCenter")

    def _find_any_vm(self, name: str):
        """A VM anywhere in the datacenter (the image's parent VM lives outside our folder)."""

        def find():
            view = self.content.viewManager.CreateContainerView(
                self._datacenter().vmFolder, [vim.VirtualMachine], True
            )
            try:
                for props in self._retrieve(_spec(vim.VirtualMachine, ["name"], view)):
                    if props["name"] == name:
                        return props["obj"]
            finally:
                view.Destroy()
            return None

        return self._call(f"find {name}", find)

    def _retrieve(self, spec) -> list[dict]:
        collector = self.content.propertyCollector
        rows = []
        result = collector.RetrievePropertiesEx(
            [spec], vmodl.query.PropertyCollector.RetrieveOptions()
        )
        while result:
            for item in result.objects:
                row = {p.name: p.val for p in item.propSet or []}
                row["obj"] = item.obj
                rows.append(row)
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(token=result.token)
        return rows

    # -- tasks -----------------------------------------------------------------------------

    def _task_state(self, task_id: str) -> dict | None:
        """state/error/result of a task, or None when vCenter no longer knows it."""
        task = vim.Task(task_id, stub=self._connect()._stub)
        try:
            rows = self._retrieve(
                _spec(vim.Task, ["info.state", "info.error", "info.result"], obj=task)
            )
        except vmodl.fault.ManagedObjectNotFound:
            return None
        return rows[0] if rows else None

    def _wait(self, task_id: str, what: str) -> Any:
        deadline = time.monotonic() + self.config.timeout
        pause = 0.05
        while True:
            state = self._call(what, lambda: self._task_state(task_id))
            if state is None:
                raise DriverError(f"{what}: vCenter lost track of task {task_id}")
            if state["info.state"] == vim.TaskInfo.State.success:
                return state.get("info.result")
            if state["info.state"] == vim.TaskInfo.State.error:
                raise translate(state["info.error"], what)
            if time.monotonic() >= deadline:
                raise DriverTimeout(
                    f"{what}: not finished after {self.config.timeout:g} s; vCenter task "
                    f"{task_id} may still be running and is picked up when the desktop is retried"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _settle(self, key: str) -> None:
        """Wait for a task a crashed or timed-out attempt left running for the same work.

        Whatever its outcome, the caller then looks at the inventory to see what is done.
        """
        task_id = self.journal.get(key)
        if task_id is None:
            return
        try:
            self._wait(task_id, f"earlier task {task_id} ({key})")
        except DriverTimeout:
            raise
        except DriverError as exc:
            log.info("earlier task for %s ended: %s", key, exc)
        self.journal.drop(key)

    def _run(self, key: str, what: str, start: Callable[[], Any], journal: bool = True) -> Any:
        """Start a task, journal its id, wait for it, and forget it once it has ended.

        Read-only tasks (datastore searches) are not journaled: running one twice is harmless.
        """
        task = self._call(what, start)
        if journal:
            self.journal.put(key, task._moId)
        try:
            result = self._wait(task._moId, what)
        except DriverTimeout:
            raise  # still under way: the journal keeps its id for the retry
        except DriverError:
            if journal:
                self.journal.drop(key)
            raise
        if journal:
            self.journal.drop(key)
        return result

    # -- reading VMs -----------------------------------------------------------------------

    VM_PROPERTIES = [
        "name",
        "config.extraConfig",
        "config.template",
        "config.hardware.device",
        "runtime.powerState",
        "datastore",
        "snapshot",
        "summary.storage.committed",
    ]

    def _vm_props(self, vm) -> dict:
        rows = self._call(
            "read VM", lambda: self._retrieve(_spec(vim.VirtualMachine, self.VM_PROPERTIES, obj=vm))
        )
        if not rows:
            raise NotFound("VM vanished while being read")
        return rows[0]

    @staticmethod
    def _marker(props: dict, key: str = MARKER_KIND) -> str:
        # The last one wins: vCenter replaces a key on reconfigure, the simulator appends.
        value = ""
        for option in props.get("config.extraConfig") or []:
            if option.key == key:
                value = str(option.value)
        return value

    @staticmethod
    def _snapshots(props_or_info) -> list:
        info = props_or_info.get("snapshot") if isinstance(props_or_info, dict) else props_or_info
        found, todo = [], list(info.rootSnapshotList if info else [])
        while todo:
            tree = todo.pop()
            found.append(tree)
            todo.extend(tree.childSnapshotList or [])
        return found

    @staticmethod
    def _disks(props: dict) -> list:
        return [
            d
            for d in props.get("config.hardware.device") or []
            if isinstance(d, vim.vm.device.VirtualDisk)
        ]

    @classmethod
    def _persistent_disks(cls, props: dict) -> list:
        return [d for d in cls._disks(props) if f"] {DISK_FOLDER}/" in d.backing.fileName]

    @classmethod
    def _system_disks(cls, props: dict) -> list:
        return [d for d in cls._disks(props) if f"] {DISK_FOLDER}/" not in d.backing.fileName]

    def _info(self, props: dict) -> VmInfo:
        kind = self._marker(props) or "foreign"
        checkpoint = ""
        for tree in self._snapshots(props):
            if tree.name == CHECKPOINT_SNAPSHOT:
                checkpoint = tree.snapshot._moId
        datastores = props.get("datastore") or []
        return VmInfo(
            name=props["name"],
            kind="clone" if kind == "desktop" else kind,
            datastore=datastores[0].name if datastores else "",
            power=POWER_ON if props["runtime.powerState"] == PowerState.poweredOn else POWER_OFF,
            replica=self._marker(props, MARKER_REPLICA),
            delta_mb=int(props.get("summary.storage.committed") or 0) // MIB,
            checkpoint=checkpoint,
            disks=tuple(
                sorted(
                    d.backing.fileName.rpartition("/")[2].removesuffix(".vmdk")
                    for d in self._persistent_disks(props)
                )
            ),
            ref=props["obj"]._moId,
        )

    def _owned(self, name: str, kind: str) -> dict | None:
        """The properties of our VM `name` of `kind`, None if there is none; DriverError if
        the name is taken by something else."""
        vm = self._find_vm(name)
        if vm is None:
            return None
        props = self._vm_props(vm)
        if self._marker(props) != kind:
            raise DriverError(
                f"the name {name} is already taken in vCenter folder {self.config.vm_folder} "
                "by a VM the portal did not create; rename or remove it there"
            )
        return props

    # -- inventory -------------------------------------------------------------------------

    def datastores(self) -> list[DatastoreInfo]:
        def read():
            view = self.content.viewManager.CreateContainerView(
                self._datacenter(), [vim.Datastore], True
            )
            try:
                rows = self._retrieve(
                    _spec(vim.Datastore, ["name", "summary.capacity", "summary.freeSpace"], view)
                )
            finally:
                view.Destroy()
            return sorted(
                (
                    DatastoreInfo(
                        r["name"],
                        int(r["summary.capacity"]) // MIB,
                        int(r["summary.freeSpace"]) // MIB,
                    )
                    for r in rows
                ),
                key=lambda d: d.name,
            )

        return self._call("list datastores", read)

    def inventory(self) -> Inventory:
        def read_vms():
            view = self.content.viewManager.CreateContainerView(
                self._folder(), [vim.VirtualMachine], False
            )
            try:
                return self._retrieve(_spec(vim.VirtualMachine, self.VM_PROPERTIES, view))
            finally:
                view.Destroy()

        vms = [self._info(p) for p in self._call("list VMs", read_vms) if self._marker(p)]
        attached = {disk: vm.name for vm in vms for disk in vm.disks}
        disks = [
            DiskInfo(name, ds, size_mb, attached.get(name, ""))
            for name, (ds, size_mb) in sorted(self._disk_files().items())
        ]
        return Inventory(datastores=self.datastores(), vms=vms, disks=disks)

    def get_vm(self, name: str) -> VmInfo:
        return self._info(self._vm_props(self._vm(name)))

    # -- datastore files -------------------------------------------------------------------

    def _disk_path(self, datastore: str, disk: str) -> str:
        return f"[{datastore}] {DISK_FOLDER}/{disk}.vmdk"

    def _disk_files(self, pattern: str = "*.vmdk") -> dict[str, tuple[str, int]]:
        """Persistent disk files by name: (datastore, size in MiB)."""
        found: dict[str, tuple[str, int]] = {}
        for ds in self._call("list datastores", lambda: self._datacenter().datastore):
            spec = vim.host.DatastoreBrowser.SearchSpec(
                matchPattern=[pattern],
                details=vim.host.DatastoreBrowser.FileInfo.Details(fileSize=True, fileType=True),
            )
            try:
                result = self._run(
                    f"search:{ds.name}",
                    f"look for disks on {ds.name}",
                    lambda ds=ds, spec=spec: ds.browser.SearchDatastore_Task(
                        datastorePath=f"[{ds.name}] {DISK_FOLDER}", searchSpec=spec
                    ),
                    journal=False,
                )
            except NotFound:
                continue  # no disk folder on this datastore yet
            for file in result.file if result else []:
                if file.path.endswith("-flat.vmdk") or not file.path.endswith(".vmdk"):
                    continue  # the flat extent belongs to the descriptor next to it
                name = file.path.removesuffix(".vmdk")
                size = int(file.fileSize or 0)
                flat = next((f for f in result.file if f.path == f"{name}-flat.vmdk"), None)
                if flat is not None:
                    size = max(size, int(flat.fileSize or 0))
                found[name] = (ds.name, size // MIB)
        return found

    def _locate_disk(self, disk: str) -> str | None:
        """The datastore holding persistent disk `disk`, or None."""
        hit = self._disk_files(f"{disk}.vmdk").get(disk)
        return hit[0] if hit else None

    def _make_directory(self, datastore: str, folder: str) -> None:
        try:
            self.content.fileManager.MakeDirectory(
                name=f"[{datastore}] {folder}",
                datacenter=self._datacenter(),
                createParentDirectories=True,
            )
        except vim.fault.FileAlreadyExists:
            pass
        except Exception as exc:
            raise translate(exc, f"create folder {folder} on {datastore}") from exc

    # -- replicas --------------------------------------------------------------------------

    def _snapshot_named(self, props: dict, name: str):
        for tree in self._snapshots(props):
            if tree.name == name:
                return tree.snapshot
        return None

    def clone_replica(self, image: ImageRef, datastore: str, name: str) -> ReplicaInfo:
        key = f"replica:{name}"
        self._settle(key)
        props = self._owned(name, "replica")
        if props is None:
            parent = self._find_any_vm(image.parent_vm)
            if parent is None:
                raise NotFound(f"parent VM {image.parent_vm} of the image not found in vCenter")
            snap = self._snapshot_named(self._vm_props(parent), image.snapshot)
            if snap is None:
                raise NotFound(
                    f"snapshot {image.snapshot} of {image.parent_vm} not found in vCenter"
                )
            spec = vim.vm.CloneSpec(
                location=vim.vm.RelocateSpec(
                    datastore=self._datastore(datastore), pool=self._resource_pool()
                ),
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
                self._run(
                    key,
                    f"clone replica {name} on {datastore}",
                    lambda: parent.CloneVM_Task(folder=self._folder(), name=name, spec=spec),
                )
            except DriverError:
                # Another worker may have cloned the same replica at the same moment (two
                # operations needing it): vCenter refuses the second clone's name. Theirs
                # will do; anything else is a real failure.
                if self._owned(name, "replica") is None:
                    raise
            props = self._owned(name, "replica")
        vm = props["obj"]
        if self._snapshot_named(props, REPLICA_SNAPSHOT) is None:
            if props.get("config.template"):
                raise DriverError(
                    f"replica {name} is a template without its snapshot; delete it in vCenter"
                )
            self._run(
                f"snapshot:{name}",
                f"snapshot replica {name}",
                lambda: vm.CreateSnapshot_Task(
                    name=REPLICA_SNAPSHOT, description="", memory=False, quiesce=False
                ),
            )
        if not props.get("config.template"):
            # A template cannot be powered on: nobody starts the replica by mistake.
            self._call(f"mark replica {name} as template", vm.MarkAsTemplate)
        size_mb = int(props.get("summary.storage.committed") or 0) // MIB or image.used_mb
        return ReplicaInfo(
            name=name, datastore=datastore, size_mb=size_mb, snapshot=REPLICA_SNAPSHOT
        )

    def delete_replica(self, name: str) -> None:
        key = f"destroy:{name}"
        self._settle(key)
        props = self._owned(name, "replica")
        if props is not None:
            self._run(key, f"delete replica {name}", props["obj"].Destroy_Task)

    # -- desktops --------------------------------------------------------------------------

    def create_linked_clone(self, name: str, replica: ReplicaInfo, datastore: str) -> VmInfo:
        key = f"clone:{name}"
        self._settle(key)
        props = self._owned(name, "desktop")
        if props is None:
            source = self._find_vm(replica.name)
            if source is None:
                raise NotFound(f"replica {replica.name} not found in vCenter")
            snap = self._snapshot_named(self._vm_props(source), replica.snapshot)
            if snap is None:
                raise NotFound(f"snapshot {replica.snapshot} of replica {replica.name} not found")
            spec = vim.vm.CloneSpec(
                location=vim.vm.RelocateSpec(
                    datastore=self._datastore(datastore),
                    pool=self._resource_pool(),
                    diskMoveType="createNewChildDiskBacking",
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
            self._run(
                key,
                f"clone {name} from {replica.name}",
                lambda: source.CloneVM_Task(folder=self._folder(), name=name, spec=spec),
            )
            props = self._owned(name, "desktop")
        return self._info(props)

    def _customization(self, vm_props: dict, spec: CustomizationSpec):
        nics = [
            d
            for d in vm_props.get("config.hardware.device") or []
            if isinstance(d, vim.vm.device.VirtualEthernetCard)
        ]
        if self.config.customization_spec:
            # The saved spec carries the domain join account, kept in vCenter, not here.
            item = self._call(
                f"read customization spec {self.config.customization_spec}",
                lambda: self.content.customizationSpecManager.GetCustomizationSpec(
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

    def customize(self, name: str, spec: CustomizationSpec) -> None:
        # Customizing again before the first boot only replaces the pending customization,
        # so a retry is harmless. vCenter refuses it while the VM is on (InvalidPowerState).
        key = f"customize:{name}"
        self._settle(key)
        props = self._vm_props(self._vm(name))
        custom = self._customization(props, spec)
        self._run(key, f"customize {name}", lambda: props["obj"].CustomizeVM_Task(spec=custom))

    def checkpoint(self, name: str) -> str:
        key = f"checkpoint:{name}"
        self._settle(key)
        vm = self._vm(name)
        props = self._vm_props(vm)
        snap = self._snapshot_named(props, CHECKPOINT_SNAPSHOT)
        if snap is None:
            snap = self._run(
                key,
                f"checkpoint {name}",
                lambda: vm.CreateSnapshot_Task(
                    name=CHECKPOINT_SNAPSHOT,
                    description="after customization",
                    memory=False,
                    quiesce=False,
                ),
            )
        return snap._moId

    def revert(self, name: str, checkpoint: str) -> None:
        key = f"revert:{name}"
        self._settle(key)
        vm = self._vm(name)
        props = self._vm_props(vm)
        snap = next(
            (t.snapshot for t in self._snapshots(props) if t.snapshot._moId == checkpoint), None
        )
        if snap is None:
            raise NotFound(
                f"checkpoint {checkpoint} of {name} not found in vCenter: recompose the desktop"
            )
        # Reverting twice is the same as once: nothing to check before.
        self._run(key, f"revert {name}", lambda: snap.RevertToSnapshot_Task(suppressPowerOn=True))

    def delete_delta(self, name: str) -> None:
        key = f"delete-delta:{name}"
        self._settle(key)
        vm = self._vm(name)
        props = self._vm_props(vm)
        if props.get("snapshot"):
            self._run(
                f"remove-snapshots:{name}",
                f"remove snapshots of {name}",
                vm.RemoveAllSnapshots_Task,
            )
        system = self._system_disks(props)
        if system:
            change = [
                vim.vm.device.VirtualDeviceSpec(
                    operation="remove", fileOperation="destroy", device=disk
                )
                for disk in system
            ]
            self._run(
                key,
                f"delete the system disk of {name}",
                lambda: vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=change)),
            )

    def _controller(self, props: dict):
        for device in props.get("config.hardware.device") or []:
            if isinstance(device, vim.vm.device.VirtualSCSIController):
                return device
        raise DriverError(f"VM {props['name']} has no SCSI controller to attach disks to")

    def _free_unit(self, props: dict, controller) -> int:
        used = {
            d.unitNumber
            for d in props.get("config.hardware.device") or []
            if d.controllerKey == controller.key
        }
        for unit in range(16):
            if unit != 7 and unit not in used:  # unit 7 is the controller's own
                return unit
        raise DriverError(f"VM {props['name']} has no free disk slot on its controller")

    @staticmethod
    def _snapshot_disk(disk) -> str:
        """The file of the replica's disk as its snapshot froze it: the parent of the disk's
        current (empty, since a template never runs) delta, or the disk itself without one."""
        parent = getattr(disk.backing, "parent", None)
        return parent.fileName if parent is not None else disk.backing.fileName

    def relink(self, name: str, replica: ReplicaInfo) -> None:
        key = f"relink:{name}"
        self._settle(key)
        vm = self._vm(name)
        props = self._vm_props(vm)
        marker = vim.option.OptionValue(key=MARKER_REPLICA, value=replica.name)
        if self._system_disks(props):
            # A new system disk exists already (an earlier attempt got this far).
            if self._marker(props, MARKER_REPLICA) != replica.name:
                self._run(
                    key,
                    f"relink {name}",
                    lambda: vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=[marker])),
                )
            return
        source = self._find_vm(replica.name)
        if source is None:
            raise NotFound(f"replica {replica.name} not found in vCenter")
        base = self._system_disks(self._vm_props(source))
        if not base:
            raise DriverError(f"replica {replica.name} has no system disk")
        datastore = (props.get("datastore") or [None])[0]
        datastore_name = datastore.name if datastore else replica.datastore
        self._make_directory(datastore_name, name)
        controller = self._controller(props)
        disk = vim.vm.device.VirtualDisk(
            key=-1,
            controllerKey=controller.key,
            unitNumber=0,
            capacityInKB=base[0].capacityInKB,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=f"[{datastore_name}] {name}/{name}-delta-{int(time.time())}.vmdk",
                diskMode="persistent",
                thinProvisioned=True,
                parent=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    fileName=self._snapshot_disk(base[0]), diskMode="persistent"
                ),
            ),
        )
        change = vim.vm.device.VirtualDeviceSpec(
            operation="add", fileOperation="create", device=disk
        )
        self._run(
            key,
            f"link {name} to {replica.name}",
            lambda: vm.ReconfigVM_Task(
                spec=vim.vm.ConfigSpec(deviceChange=[change], extraConfig=[marker])
            ),
        )

    def delete_vm(self, name: str) -> None:
        key = f"destroy:{name}"
        self._settle(key)
        vm = self._find_vm(name)
        if vm is None:
            return
        props = self._vm_props(vm)
        if self._marker(props) != "desktop":
            raise DriverError(
                f"VM {name} in vCenter was not created by the portal; not deleting it"
            )
        if props["runtime.powerState"] != PowerState.poweredOff:
            self.power_off(name)
        # Destroy deletes every attached disk file: a persistent disk left attached by
        # mistake is detached first, so it is never lost with the VM.
        for disk in self._persistent_disks(props):
            self.detach_disk(name, disk.backing.fileName.rpartition("/")[2].removesuffix(".vmdk"))
        self._run(key, f"delete {name}", vm.Destroy_Task)

    def move_vm(self, name: str, datastore: str) -> None:
        key = f"relocate:{name}"
        self._settle(key)
        vm = self._vm(name)
        props = self._vm_props(vm)
        target = self._datastore(datastore)
        current = [ds.name for ds in props.get("datastore") or []]
        if current == [datastore]:
            return
        # Attached persistent disks move with the VM (steps detach them first; this keeps
        # the two together should a disk still be attached).
        locators = [
            vim.vm.RelocateSpec.DiskLocator(diskId=d.key, datastore=target)
            for d in self._persistent_disks(props)
        ]
        spec = vim.vm.RelocateSpec(datastore=target, disk=locators or None)
        self._run(key, f"move {name} to {datastore}", lambda: vm.RelocateVM_Task(spec=spec))

    # -- persistent disks ------------------------------------------------------------------

    def create_disk(self, name: str, datastore: str, size_mb: int) -> DiskInfo:
        key = f"create-disk:{name}"
        self._settle(key)
        where = self._locate_disk(name)
        if where is None:
            self._make_directory(datastore, DISK_FOLDER)
            spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
                capacityKb=size_mb * 1024, adapterType="lsiLogic", diskType="thin"
            )
            self._run(
                key,
                f"create disk {name} on {datastore}",
                lambda: self.content.virtualDiskManager.CreateVirtualDisk_Task(
                    name=self._disk_path(datastore, name), datacenter=self._datacenter(), spec=spec
                ),
            )
            where = datastore
        return DiskInfo(name=name, datastore=where, size_mb=size_mb)

    def _device_for(self, props: dict, disk: str):
        suffix = f"] {DISK_FOLDER}/{disk}.vmdk"
        return next(
            (d for d in self._persistent_disks(props) if d.backing.fileName.endswith(suffix)), None
        )

    def attach_disk(self, vm: str, disk: str) -> None:
        key = f"attach:{vm}:{disk}"
        self._settle(key)
        machine = self._vm(vm)
        props = self._vm_props(machine)
        if self._device_for(props, disk) is not None:
            return
        where = self._locate_disk(disk)
        if where is None:
            raise NotFound(f"persistent disk {disk} not found on any datastore")
        controller = self._controller(props)
        device = vim.vm.device.VirtualDisk(
            key=-1,
            controllerKey=controller.key,
            unitNumber=self._free_unit(props, controller),
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=self._disk_path(where, disk),
                # Independent: snapshots and their revert (refresh) never touch user data.
                diskMode="independent_persistent",
            ),
        )
        change = vim.vm.device.VirtualDeviceSpec(operation="add", device=device)
        self._run(
            key,
            f"attach disk {disk} to {vm}",
            lambda: machine.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])),
        )

    def detach_disk(self, vm: str, disk: str) -> None:
        key = f"detach:{vm}:{disk}"
        self._settle(key)
        machine = self._find_vm(vm)
        if machine is None:
            return  # the VM is gone: the disk is attached to nothing
        props = self._vm_props(machine)
        device = self._device_for(props, disk)
        if device is None:
            return
        # No fileOperation: the device goes, the file stays.
        change = vim.vm.device.VirtualDeviceSpec(operation="remove", device=device)
        self._run(
            key,
            f"detach disk {disk} from {vm}",
            lambda: machine.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])),
        )

    def move_disk(self, disk: str, datastore: str) -> None:
        key = f"move-disk:{disk}"
        self._settle(key)
        where = self._locate_disk(disk)
        if where == datastore:
            return
        if where is None:
            raise NotFound(f"persistent disk {disk} not found on any datastore")
        self._make_directory(datastore, DISK_FOLDER)
        self._run(
            key,
            f"move disk {disk} to {datastore}",
            lambda: self.content.virtualDiskManager.MoveVirtualDisk_Task(
                sourceName=self._disk_path(where, disk),
                sourceDatacenter=self._datacenter(),
                destName=self._disk_path(datastore, disk),
                destDatacenter=self._datacenter(),
                force=False,
            ),
        )

    def delete_disk(self, disk: str) -> None:
        key = f"delete-disk:{disk}"
        self._settle(key)
        where = self._locate_disk(disk)
        if where is None:
            return
        self._run(
            key,
            f"delete disk {disk}",
            lambda: self.content.virtualDiskManager.DeleteVirtualDisk_Task(
                name=self._disk_path(where, disk), datacenter=self._datacenter()
            ),
        )

    # -- power and sessions ----------------------------------------------------------------

    def _power(self, name: str) -> tuple[Any, str]:
        vm = self._vm(name)
        return vm, self._call(f"read power state of {name}", lambda: vm.runtime.powerState)

    def power_on(self, name: str) -> None:
        key = f"power:{name}"
        self._settle(key)
        vm, state = self._power(name)
        if state != PowerState.poweredOn:
            self._run(key, f"power on {name}", vm.PowerOnVM_Task)

    def power_off(self, name: str) -> None:
        key = f"power:{name}"
        self._settle(key)
        vm, state = self._power(name)
        if state != PowerState.poweredOff:
            self._run(key, f"power off {name}", vm.PowerOffVM_Task)

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
        self._call(f"shut down {name}", vm.ShutdownGuest)  # needs VMware Tools in the guest
        self._wait_power(name, PowerState.poweredOff, f"shut down {name}")

    def restart(self, name: str) -> None:
        vm, state = self._power(name)
        if state != PowerState.poweredOn:
            self.power_on(name)
            return
        # A guest reboot needs VMware Tools; a reset is the hard fallback.
        try:
            vm.RebootGuest()
        except (vim.fault.ToolsUnavailable, vmodl.fault.NotSupported, vmodl.fault.MethodNotFound):
            self._run(f"power:{name}", f"reset {name}", vm.ResetVM_Task)
        except Exception as exc:
            raise translate(exc, f"restart {name}") from exc

    def log_off(self, name: str) -> None:
        # vCenter sees no user sessions; they belong to the desktop agent's protocol.
        raise DriverError(
            f"log off {name}: vCenter has no API for user sessions; log the user off from the "
            "desktop agent, or restart the desktop"
        )

    def send_message(self, name: str, text: str) -> None:
        # No session is ever reported on vSphere (see log_off), and "no session" is no error.
        log.info("message for %s not delivered: vSphere reports no sessions", name)
