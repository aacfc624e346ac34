"""Finding vCenter objects the way an administrator names them.

A place is named by its inventory path, as govc's `ls` and `find` print it
(`/F0/DC0/host/Prod/C1`, `/F0/DC0/vm/VDI/Pools`), or, where that is unambiguous, by name:

- a value starting with "/" is a full inventory path;
- otherwise it is first taken as a path under the datacenter's folder of its kind
  (`host` for clusters, hosts and resource pools, `vm` for folders and VMs), so `VDI/Pools`
  is the folder Pools inside VDI, not a folder named "VDI/Pools";
- failing that, a single name is looked for anywhere in the datacenter. Two objects of that
  name are an error that lists both paths, so the administrator can pick one; nothing is
  ever chosen silently.

Lookups are made once per driver and cached by the caller; what is stored afterwards is the
object's managed object id, not its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyVmomi import vim

from composer.drivers.base import DriverError, NotFound
from composer.drivers.vsphere.session import PC, Session

KIND_WORDS = {
    vim.Datacenter: "datacenter",
    vim.ComputeResource: "cluster or host",
    vim.ClusterComputeResource: "cluster",
    vim.HostSystem: "host",
    vim.ResourcePool: "resource pool",
    vim.Folder: "VM folder",
    vim.VirtualMachine: "VM",
}


class Ambiguous(DriverError):
    """A name matches several objects; the message lists their paths."""


def word(obj_type) -> str:
    return KIND_WORDS.get(obj_type, obj_type.__name__.rpartition(".")[2])


@dataclass(frozen=True)
class Datacenter:
    obj: object
    name: str
    path: str
    vm_folder: object
    host_folder: object


@dataclass
class Placement:
    """Where new VMs go: a resource pool, and a host when vCenter will not choose one (a
    cluster without DRS, or a host the endpoint names). `datastores` are the names of the
    datastores mounted there."""

    compute: object  # the cluster or standalone host (ComputeResource)
    pool: object
    hosts: list  # hosts new VMs may be placed on explicitly ([] lets DRS choose)
    datastores: set[str]
    description: str


class Lookup:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- paths -----------------------------------------------------------------------------

    def by_path(self, path: str):
        """The object at an inventory path, or None."""
        clean = "/".join(part for part in path.split("/") if part)
        if not clean:
            return None
        return self.session.call(
            f"find {path}",
            lambda: self.session.content.searchIndex.FindByInventoryPath(inventoryPath=clean),
        )

    def path_of(self, obj) -> str:
        """The inventory path of an object, as govc prints it."""
        names = []
        root = self.session.content.rootFolder
        while obj is not None and obj != root:
            row = self.session.read(obj, ["name", "parent"], "read inventory path")
            names.append(row["name"])
            obj = row.get("parent")
        return "/" + "/".join(reversed(names))

    def _named(self, container, obj_type, name: str) -> list:
        rows = self.session.read_all(
            container, obj_type, ["name"], what=f"look for {word(obj_type)} {name}"
        )
        return [row["obj"] for row in rows if row["name"] == name]

    def _one(self, found: list, obj_type, name: str, where: str):
        if len(found) == 1:
            return found[0]
        if not found:
            raise NotFound(f"{word(obj_type)} {name} not found in {where}")
        paths = sorted(self.path_of(obj) for obj in found)
        raise Ambiguous(
            f"{len(found)} objects named {name} in {where}: "
            + ", ".join(paths)
            + "; give the endpoint the inventory path of the one to use"
        )

    def _typed(self, obj, obj_type, spec: str):
        if obj is not None and not isinstance(obj, obj_type):
            raise DriverError(f"{spec} is a {word(type(obj))}, not a {word(obj_type)}")
        return obj

    # -- datacenter ------------------------------------------------------------------------

    def datacenter(self, spec: str) -> Datacenter:
        obj = self._datacenter(spec)
        row = self.session.read(obj, ["name", "vmFolder", "hostFolder"], "read the datacenter")
        return Datacenter(obj, row["name"], self.path_of(obj), row["vmFolder"], row["hostFolder"])

    def _datacenter(self, spec: str):
        root = self.session.content.rootFolder
        if spec.startswith("/") or "/" in spec:
            found = self._typed(self.by_path(spec), vim.Datacenter, spec)
            if found is None:
                raise NotFound(f"datacenter {spec} not found in vCenter")
            return found
        if spec:
            return self._one(
                self._named(root, vim.Datacenter, spec), vim.Datacenter, spec, "vCenter"
            )
        every = self.session.read_all(root, vim.Datacenter, ["name"], what="list datacenters")
        if len(every) == 1:
            return every[0]["obj"]
        if not every:
            raise NotFound("vCenter has no datacenter")
        paths = sorted(self.path_of(row["obj"]) for row in every)
        raise Ambiguous(f"vCenter has {len(every)} datacenters ({', '.join(paths)}); name one")

    # -- objects under a datacenter ---------------------------------------------------------

    def under(self, dc, kind: str, spec: str, obj_type, within=None):
        """The `obj_type` named by `spec` in the datacenter's `kind` folder ("host" or "vm"),
        or None when a path leads nowhere (a name that matches nothing raises NotFound)."""
        if spec.startswith("/"):
            return self._typed(self.by_path(spec), obj_type, spec)
        found = self._typed(self.by_path(f"{dc.path}/{kind}/{spec}"), obj_type, spec)
        if found is not None or "/" in spec:
            return found
        container = within if within is not None else getattr(dc, f"{kind}_folder")
        return self._one(
            self._named(container, obj_type, spec), obj_type, spec, f"datacenter {dc.name}"
        )

    def vm(self, dc, spec: str):
        """A VM outside the portal's folder (the golden image's parent), by path or name."""
        found = self.under(dc, "vm", spec, vim.VirtualMachine)
        if found is None:
            raise NotFound(f"VM {spec} not found in vCenter")
        return found

    def folder(self, dc, spec: str, create: bool):
        """The VM folder `spec`; with `create`, the missing folders along its path are made.
        Returns (folder or None, what was done or is missing)."""
        base = f"{dc.path}/vm"
        path = spec if spec.startswith("/") else f"{base}/{spec}"
        parts = [p for p in path.split("/") if p]
        base_parts = [p for p in base.split("/") if p]
        if parts[: len(base_parts)] != base_parts:
            raise DriverError(f"VM folder {spec} is not under {base}, the datacenter's VM folder")
        found = self._typed(self.by_path(path), vim.Folder, spec)
        if found is not None:
            return found
        if not create:
            raise NotFound(
                f"VM folder {path} does not exist; create it in vCenter, or let the portal "
                "create it (the endpoint's 'create VM folder' setting)"
            )
        folder = dc.vm_folder
        index = self.session.content.searchIndex
        for name in parts[len(base_parts) :]:
            child = self.session.call(
                f"find folder {name}", lambda f=folder, n=name: index.FindChild(entity=f, name=n)
            )
            if child is None:
                try:
                    child = self.session.call(
                        f"create folder {name}", lambda f=folder, n=name: f.CreateFolder(name=n)
                    )
                except DriverError:
                    # Another worker made it just now (DuplicateName); anything else: raise.
                    child = self.session.call(
                        f"find folder {name}",
                        lambda f=folder, n=name: index.FindChild(entity=f, name=n),
                    )
                    if child is None:
                        raise
            folder = self._typed(child, vim.Folder, f"{path} ({name})")
        return folder

    # -- placement -------------------------------------------------------------------------

    def placement(self, dc, cluster: str, pool: str, host: str) -> Placement:
        compute = self._compute(dc, cluster)
        props = self.session.read(
            compute,
            ["name", "resourcePool", "host", "datastore"]
            + (["configurationEx"] if isinstance(compute, vim.ClusterComputeResource) else []),
            "read the cluster",
        )
        where = self.path_of(compute)
        if pool:
            if pool.startswith("/"):
                chosen = self._typed(self.by_path(pool), vim.ResourcePool, pool)
            else:
                chosen = self._typed(
                    self.by_path(f"{where}/Resources/{pool}"), vim.ResourcePool, pool
                )
                if chosen is None and "/" not in pool:
                    chosen = self._one(
                        self._named(compute, vim.ResourcePool, pool),
                        vim.ResourcePool,
                        pool,
                        where,
                    )
            if chosen is None:
                raise NotFound(f"resource pool {pool} not found in {where}")
        else:
            chosen = props["resourcePool"]
        hosts = self.session.read_all(
            compute,
            vim.HostSystem,
            ["name", "runtime.connectionState", "runtime.inMaintenanceMode"],
            what=f"list the hosts of {where}",
        )
        usable = sorted(
            (
                h
                for h in hosts
                if h.get("runtime.connectionState") == "connected"
                and not h.get("runtime.inMaintenanceMode")
            ),
            key=lambda h: h["name"],
        )
        drs = isinstance(compute, vim.ClusterComputeResource) and bool(
            getattr(getattr(props.get("configurationEx"), "drsConfig", None), "enabled", False)
        )
        if host:
            named = [h for h in hosts if h["name"] == host or self.path_of(h["obj"]) == host]
            if not named:
                raise NotFound(f"host {host} not found in {where}")
            targets = [named[0]]
        elif drs:
            targets = []  # DRS places each VM
        else:
            if not usable:
                raise DriverError(f"{where} has no connected host out of maintenance mode")
            targets = usable
        # One retrieval for the names of every datastore mounted on the cluster's hosts.
        mounted = props.get("datastore") or []
        names = (
            {r["name"] for r in self.session.retrieve(_names_of(mounted), f"datastores of {where}")}
            if mounted
            else set()
        )
        kind = "cluster" if isinstance(compute, vim.ClusterComputeResource) else "host"
        description = f"{kind} {where}" + (
            f" on host(s) {', '.join(t['name'] for t in targets)}"
            if targets
            else " (DRS places VMs)"
        )
        if pool:
            description += f", resource pool {pool}"
        return Placement(compute, chosen, [t["obj"] for t in targets], names, description)

    def _compute(self, dc, cluster: str):
        if cluster:
            found = self.under(dc, "host", cluster, vim.ComputeResource)
            if found is None:
                raise NotFound(f"cluster {cluster} not found in vCenter")
            return found
        rows = self.session.read_all(
            dc.host_folder, vim.ComputeResource, ["name"], what="list clusters"
        )
        clusters = [r["obj"] for r in rows if isinstance(r["obj"], vim.ClusterComputeResource)]
        standalone = [
            r["obj"] for r in rows if not isinstance(r["obj"], vim.ClusterComputeResource)
        ]
        for candidates in (clusters, standalone):
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                paths = sorted(self.path_of(c) for c in candidates)
                raise Ambiguous(
                    f"datacenter {dc.name} has {len(candidates)} "
                    f"{'clusters' if candidates is clusters else 'hosts'} ({', '.join(paths)}); "
                    "name the one the desktops run on"
                )
        raise NotFound(f"datacenter {dc.name} has no cluster or host")


def _names_of(datastores: list):
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=ds) for ds in datastores],
        propSet=[PC.PropertySpec(type=vim.Datastore, pathSet=["name"])],
    )
