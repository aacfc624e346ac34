"""Where the portal works in vCenter, remembered by managed object id between jobs.

Finding the datacenter, the VM folder, the cluster, its resource pool and hosts and the
datastores by path or name takes a score of round trips. Each desktop is its own job, so the
driver keeps what it found in a PlaceStore (the endpoint's row, in the portal) and the next
job rebuilds the objects from their ids: one round trip checks that they all still exist,
and anything gone, or any change to the endpoint's settings, makes the driver look them up
again by name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol

from pyVmomi import vim, vmodl

from composer.drivers.vsphere.lookup import Datacenter, Placement

PC = vmodl.query.PropertyCollector


class PlaceStore(Protocol):
    def get(self) -> dict | None: ...

    def put(self, places: dict) -> None: ...


class MemoryPlaces:
    """A store for one process (tests, the bench)."""

    def __init__(self) -> None:
        self.places: dict | None = None

    def get(self) -> dict | None:
        return self.places

    def put(self, places: dict) -> None:
        self.places = json.loads(json.dumps(places))


def fingerprint(config) -> str:
    """What the stored places were found from: other settings, other places."""
    fields = [
        config.host,
        str(config.port),
        config.datacenter,
        config.cluster,
        config.resource_pool,
        config.esx_host,
        config.vm_folder,
    ]
    return hashlib.sha256("\0".join(fields).encode()).hexdigest()[:16]


def _ref(obj) -> list[str]:
    return [obj._wsdlName, obj._moId]


def _obj(ref: list[str], stub):
    kind, moid = ref
    return getattr(vim, kind)(moid, stub)


def dump(found: dict) -> dict:
    """The ids of what `found` holds ("dc", "folder", "placement", "datastores")."""
    out: dict = {}
    if "dc" in found:
        dc: Datacenter = found["dc"]
        out["dc"] = {
            "obj": _ref(dc.obj),
            "name": dc.name,
            "path": dc.path,
            "vm_folder": _ref(dc.vm_folder),
            "host_folder": _ref(dc.host_folder),
        }
    if "folder" in found:
        out["folder"] = _ref(found["folder"])
    if "placement" in found:
        place: Placement = found["placement"]
        out["placement"] = {
            "compute": _ref(place.compute),
            "pool": _ref(place.pool),
            "hosts": [_ref(h) for h in place.hosts],
            "datastores": sorted(place.datastores),
            "description": place.description,
        }
    if "datastore_ids" in found:
        out["datastore_ids"] = {name: _ref(ds) for name, ds in found["datastore_ids"].items()}
    return out


def load(stored: dict, stub) -> dict:
    """The objects behind stored ids (not yet checked to exist)."""
    found: dict = {}
    if "dc" in stored:
        dc = stored["dc"]
        found["dc"] = Datacenter(
            _obj(dc["obj"], stub),
            dc["name"],
            dc["path"],
            _obj(dc["vm_folder"], stub),
            _obj(dc["host_folder"], stub),
        )
    if "folder" in stored:
        found["folder"] = _obj(stored["folder"], stub)
    if "placement" in stored:
        place = stored["placement"]
        found["placement"] = Placement(
            _obj(place["compute"], stub),
            _obj(place["pool"], stub),
            [_obj(h, stub) for h in place["hosts"]],
            set(place["datastores"]),
            place["description"],
        )
    if "datastore_ids" in stored:
        found["datastore_ids"] = {
            name: _obj(ref, stub) for name, ref in stored["datastore_ids"].items()
        }
    return found


def objects_of(found: dict) -> list:
    objs = []
    if "dc" in found:
        dc = found["dc"]
        objs += [dc.obj, dc.vm_folder, dc.host_folder]
    if "folder" in found:
        objs.append(found["folder"])
    if "placement" in found:
        place = found["placement"]
        objs += [place.compute, place.pool, *place.hosts]
    objs += list(found.get("datastore_ids", {}).values())
    return objs


def existence_spec(objs: list):
    """One property retrieval that names every object: fewer rows back means one is gone."""
    kinds = {type(o) for o in objs}
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=o) for o in objs],
        propSet=[PC.PropertySpec(type=kind, pathSet=["name"]) for kind in kinds],
    )
