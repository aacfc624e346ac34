"""govmomi's vCenter simulator as a test peer: build it, start it, read its inventory back.

The reader uses pyvmomi directly, not our driver, so a test checks what vCenter holds
rather than what the driver believes.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "data" / "vcsim"
NOT_INSTALLED = 3  # build_vcsim.sh's exit code when Go or govmomi is missing
USER, PASSWORD = "svc-vdi@vsphere.local", "vcsim-secret"
PARENT_VM = "DC0_C0_RP0_VM0"  # the golden image the simulator starts with


def build() -> tuple[bool, str]:
    """(built, why not)."""
    done = subprocess.run(
        [str(ROOT / "tests" / "vsphere" / "build_vcsim.sh")], capture_output=True, text=True
    )
    if done.returncode == 0:
        return True, ""
    return False, (done.stderr or done.stdout).strip()


@dataclass
class Vcsim:
    process: subprocess.Popen
    url: str
    host: str
    port: int
    cert: str = ""
    log: str = ""

    def output(self) -> str:
        return Path(self.log).read_text() if self.log and Path(self.log).exists() else ""

    def command(self, line: str) -> None:
        """A fault-injection command (see main.go: `disable VM METHOD`, `enable VM METHOD`),
        returning once the simulator has it in force."""
        before = self.output()
        oks, errors = before.count(f"OK {line}\n"), before.count("ERROR")
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 10
        while self.output().count(f"OK {line}\n") == oks:
            if self.output().count("ERROR") > errors or time.monotonic() > deadline:
                raise RuntimeError(f"vcsim refused {line!r}: {self.output()[-300:]}")
            time.sleep(0.02)

    def fail(self, vm: str, method: str) -> None:
        """Every call of `method` on `vm` fails (MethodDisabled) until `heal`."""
        self.command(f"disable {vm} {method}")

    def heal(self, vm: str, method: str) -> None:
        self.command(f"enable {vm} {method}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the simulator exits when its stdin closes
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log and Path(self.log).exists():
            os.unlink(self.log)

    def connect(self):
        return SmartConnect(
            protocol="http", host=self.host, port=self.port, user=USER, pwd=PASSWORD
        )


def start(
    *,
    method_delay: dict[str, int] | None = None,
    tls_cert: str = "",
    datastores: int = 2,
    folder: bool = False,
    standalone: int = 0,
    drs: bool = True,
    unbrowsable: tuple[str, ...] = (),
    delay_ms: int = 0,
    vms: int = 1,
) -> Vcsim:
    """Start a simulated vCenter. The layout options: `datastores` (LocalDS_0...), `folder`
    (the datacenter in folder F0, its cluster, VMs and datastores in sub-folders F0),
    `standalone` hosts beside the cluster, `drs=False` (clusters without DRS), and
    `unbrowsable` datastores whose browser refuses every search, `delay_ms` on every API
    call, and `vms` VMs in the cluster's resource pool at the start."""
    args = [str(BINARY), "-listen", "127.0.0.1:0", "-ds", str(datastores), "-username", USER]
    args += ["-password", PASSWORD]
    if method_delay:
        args += ["-method-delay", ",".join(f"{k}={v}" for k, v in method_delay.items())]
    if tls_cert:
        args += ["-tls-cert", tls_cert]
    if folder:
        args += ["-folder", "1"]
    if standalone:
        args += ["-standalone", str(standalone)]
    if not drs:
        args.append("-no-drs")
    if unbrowsable:
        args += ["-unbrowsable", ",".join(unbrowsable)]
    if delay_ms:
        args += ["-delay", str(delay_ms)]
    if vms != 1:
        args += ["-vm", str(vms)]
    # Its log goes to a file: a pipe nobody reads would fill up and stall the simulator.
    log = tempfile.NamedTemporaryFile(prefix="vcsim-", suffix=".log", delete=False)
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log, stderr=log, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"VCSIM_URL=((\w+)://([\d.]+):(\d+)\S*)", Path(log.name).read_text())
        if match:
            return Vcsim(process, match[1], match[3], int(match[4]), tls_cert, log.name)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("vcsim did not start: " + Path(log.name).read_text())


# -- reading vCenter back with pyvmomi -------------------------------------------------------


@dataclass
class VM:
    name: str
    datastores: list[str]
    power: str
    template: bool
    snapshots: list[str]
    current_snapshot: str
    extra: dict[str, str]
    disks: list[str] = field(default_factory=list)  # backing file names

    @property
    def persistent_disks(self) -> list[str]:
        return [d for d in self.disks if "] vdiportal-disks/" in d]

    @property
    def system_disks(self) -> list[str]:
        return [d for d in self.disks if "] vdiportal-disks/" not in d]


class Reader:
    """What the simulator holds, through plain pyvmomi."""

    def __init__(self, sim: Vcsim, folder: str = "vdi-portal"):
        self.si = sim.connect()
        self.content = self.si.RetrieveContent()
        self.dc = self._all(vim.Datacenter)[0]
        self.folder = folder  # the portal's VM folder: a path under the datacenter's vm folder

    def path_of(self, obj) -> str:
        names = []
        while obj is not None and obj != self.content.rootFolder:
            names.append(obj.name)
            obj = obj.parent
        return "/" + "/".join(reversed(names))

    def find(self, path: str):
        """The object at an inventory path (absolute, or under the datacenter)."""
        if not path.startswith("/"):
            path = f"{self.path_of(self.dc)}/{path}"
        return self.content.searchIndex.FindByInventoryPath(path.strip("/"))

    def make_folder(self, path: str):
        """A VM folder under the datacenter's vm folder, made along its path."""
        folder = self.dc.vmFolder
        for name in path.split("/"):
            child = self.content.searchIndex.FindChild(entity=folder, name=name)
            folder = child or folder.CreateFolder(name=name)
        return folder

    @property
    def cluster(self):
        return self._all(vim.ClusterComputeResource)[0]

    def close(self):
        Disconnect(self.si)

    def _all(self, kind):
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            return list(view.view)
        finally:
            view.Destroy()

    def vm_object(self, name: str):
        return next((vm for vm in self._all(vim.VirtualMachine) if vm.name == name), None)

    def folder_vms(self, folder: str = "") -> dict[str, VM]:
        """The VMs anywhere under the portal's folder."""
        found = self.find(f"vm/{folder or self.folder}")
        if found is None:
            return {}
        # One property-collector call: the simulator's single-property fetch crashes on an
        # unset property (a VM without snapshots).
        PC = vmodl.query.PropertyCollector
        view = self.content.viewManager.CreateContainerView(found, [vim.VirtualMachine], True)
        paths = ["name", "datastore", "runtime.powerState", "config", "snapshot"]
        spec = PC.FilterSpec(
            objectSet=[
                PC.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[PC.TraversalSpec(path="view", type=vim.view.ContainerView)],
                )
            ],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=paths)],
        )
        try:
            rows = [
                {p.name: p.val for p in item.propSet}
                for item in self.content.propertyCollector.RetrieveContents([spec])
            ]
        finally:
            view.Destroy()
        vms = {}
        for row in rows:
            info = row.get("snapshot")
            snaps, todo, names = [], list(info.rootSnapshotList if info else []), {}
            while todo:
                tree = todo.pop()
                snaps.append(tree.name)
                names[tree.snapshot._moId] = tree.name
                todo.extend(tree.childSnapshotList or [])
            current = info.currentSnapshot._moId if info and info.currentSnapshot else ""
            config = row["config"]
            extra = {}
            for option in config.extraConfig or []:
                extra[option.key] = str(option.value)  # the last value of a key wins
            vms[row["name"]] = VM(
                name=row["name"],
                datastores=sorted(ds.name for ds in row.get("datastore") or []),
                power=str(row["runtime.powerState"]),
                template=bool(config.template),
                snapshots=sorted(snaps),
                current_snapshot=names.get(current, ""),
                extra=extra,
                disks=sorted(
                    d.backing.fileName
                    for d in config.hardware.device
                    if isinstance(d, vim.vm.device.VirtualDisk)
                ),
            )
        return vms

    def disk_files(self) -> dict[str, str]:
        """Persistent disk files on the datastores: name -> datastore."""
        found = {}
        for ds in self.dc.datastore:
            path = Path(ds.summary.url) / "vdiportal-disks"
            if path.is_dir():  # the simulator's datastores are local folders
                for file in os.listdir(path):
                    if file.endswith(".vmdk") and not file.endswith("-flat.vmdk"):
                        found[file.removesuffix(".vmdk")] = ds.name
        return found

    def snapshot_parent(self, name: str, snapshot: str):
        vm = self.vm_object(name)
        task = vm.CreateSnapshot_Task(name=snapshot, description="", memory=False, quiesce=False)
        wait(task)

    def power_on(self, name: str):
        wait(self.vm_object(name).PowerOnVM_Task())

    def destroy(self, name: str):
        vm = self.vm_object(name)
        if vm.runtime.powerState == "poweredOn":
            wait(vm.PowerOffVM_Task())
        wait(vm.Destroy_Task())

    def clone_into_folder(self, source: str, name: str, extra: dict | None = None):
        """A VM made behind the portal's back, in the portal's folder."""
        self.clone(source, name, self.folder, extra)

    def clone(self, source: str, name: str, folder: str, extra: dict | None = None):
        """A copy of VM `source` named `name` in the VM folder `folder` (made if missing)."""
        vm = source if not isinstance(source, str) else self.vm_object(source)
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=self.cluster.resourcePool),
            powerOn=False,
            config=vim.vm.ConfigSpec(
                extraConfig=[
                    vim.option.OptionValue(key=k, value=v) for k, v in (extra or {}).items()
                ]
            ),
        )
        wait(vm.CloneVM_Task(folder=self.make_folder(folder), name=name, spec=spec))


def wait(task):
    # Property by property: the simulator's snapshot tasks carry an entity pyvmomi rejects.
    while True:
        state = task.info.state
        if state in ("success", "error"):
            break
        time.sleep(0.02)
    if state == "error":
        raise RuntimeError(task.info.error.msg)
