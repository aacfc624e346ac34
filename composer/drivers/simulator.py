"""A simulated hypervisor whose whole inventory lives in Redis.

Every process sharing the Redis (web server, RQ workers on any host, tests, management
commands) sees the same hypervisor, so the portal can be developed, tested and demonstrated
without vSphere. It keeps the rules a real hypervisor enforces (power states, space on
datastores, disks attached to one VM at a time) because the composer must cope with them.

State changes run as optimistic transactions (WATCH/MULTI): each read watches its key and all
writes are applied at once, so a call either fully happens or changes nothing, even when
several workers race for the last free space of a datastore.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from composer.drivers.base import (
    POWER_OFF,
    POWER_ON,
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
from composer.drivers.registry import register

CLONE_DELTA_MB = 64
CUSTOMIZE_DELTA_MB = 256
REPLICA_SNAPSHOT = "replica-base"

# Optimistic transactions retry when another process touched the same keys; this many
# consecutive losses means something is badly wrong rather than merely busy.
_MAX_ATTEMPTS = 1000

# Increment the in-flight counter and raise the peak in one step, so that two processes
# entering together cannot both read the old peak. Calls on one VM are counted too: a second
# call on a VM while one runs is recorded as an overlap, which the portal must never cause
# (one live operation per desktop).
_ENTER_LUA = """
local n = redis.call('INCR', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > peak then redis.call('SET', KEYS[2], n) end
if redis.call('HINCRBY', KEYS[3], ARGV[1], 1) > 1 then redis.call('RPUSH', KEYS[4], ARGV[2]) end
return n
"""

Record = dict[str, Any]
T = TypeVar("T")


def _text(value: bytes | str) -> str:
    # The connection may or may not have been created with decode_responses.
    return value.decode() if isinstance(value, bytes) else value


class _State:
    """One optimistic transaction: every read WATCHes its key, writes wait for commit()."""

    def __init__(self, prefix: str, pipe: redis.client.Pipeline) -> None:
        self._prefix = prefix
        self._pipe = pipe
        self._records: dict[tuple[str, str], Record | None] = {}
        self._dirty: set[tuple[str, str]] = set()

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    def _index(self, kind: str) -> str:
        return f"{self._prefix}index:{kind}"

    def get(self, kind: str, name: str) -> Record | None:
        if (kind, name) not in self._records:
            key = self._key(kind, name)
            self._pipe.watch(key)
            raw = self._pipe.get(key)
            self._records[(kind, name)] = json.loads(raw) if raw is not None else None
        return self._records[(kind, name)]

    def all(self, kind: str) -> dict[str, Record]:
        index = self._index(kind)
        self._pipe.watch(index)
        names = {_text(n) for n in self._pipe.smembers(index)}
        names |= {n for (k, n) in self._records if k == kind}
        unread = sorted(n for n in names if (kind, n) not in self._records)
        if unread:
            keys = [self._key(kind, n) for n in unread]
            self._pipe.watch(*keys)
            for name, raw in zip(unread, self._pipe.mget(keys), strict=True):
                self._records[(kind, name)] = json.loads(raw) if raw is not None else None
        return {
            n: record for n in sorted(names) if (record := self._records[(kind, n)]) is not None
        }

    def put(self, kind: str, name: str, record: Record | None) -> None:
        self._records[(kind, name)] = record
        self._dirty.add((kind, name))

    def delete(self, kind: str, name: str) -> None:
        self.put(kind, name, None)

    def commit(self) -> None:
        self._pipe.multi()
        for kind, name in self._dirty:
            record = self._records[(kind, name)]
            if record is None:
                self._pipe.delete(self._key(kind, name))
                self._pipe.srem(self._index(kind), name)
            else:
                self._pipe.set(self._key(kind, name), json.dumps(record))
                self._pipe.sadd(self._index(kind), name)
        self._pipe.execute()


def _allocate(state: _State, datastore: str, mb: int) -> None:
    """Take mb MiB on the datastore (give back when negative), or raise InsufficientSpace."""
    ds = state.get("ds", datastore)
    if ds is None:
        raise NotFound(f"datastore {datastore} not found")
    free = ds["capacity_mb"] - ds["used_mb"]
    if mb > 0 and mb > free:
        raise InsufficientSpace(f"datastore {datastore}: {mb} MiB needed, {free} MiB free")
    ds["used_mb"] = max(0, ds["used_mb"] + mb)
    state.put("ds", datastore, ds)


def _need_vm(state: _State, name: str, kind: str = "clone") -> Record:
    vm = state.get("vm", name)
    if vm is None:
        raise NotFound(f"VM {name} not found")
    if vm["kind"] != kind:
        raise DriverError(f"{name} is a {vm['kind']} VM, not a {kind}")
    return vm


def _need_disk(state: _State, name: str, datastore: str | None = None) -> Record:
    disk = state.get("disk", name)
    if disk is None:
        raise NotFound(f"disk {name} not found")
    if datastore is not None and disk["datastore"] != datastore:
        raise NotFound(f"disk {name} not found on {datastore} (it is on {disk['datastore']})")
    return disk


def _need_power_off(vm: Record, name: str, step: str) -> None:
    if vm["power"] != POWER_OFF:
        raise InvalidPowerState(f"{step} needs {name} powered off")


def _vm_space(vm: Record) -> int:
    # What deleting the VM gives back: a replica is a full copy, a clone only its delta.
    return vm.get("size_mb", 0) if vm["kind"] == "replica" else vm.get("delta_mb", 0)


def _vm_info(name: str, vm: Record) -> VmInfo:
    return VmInfo(
        name=name,
        kind=vm["kind"],
        datastore=vm.get("datastore", ""),
        power=vm.get("power", POWER_OFF),
        replica=vm.get("replica", ""),
        delta_mb=vm.get("delta_mb", 0),
        checkpoint=vm.get("checkpoint", ""),
        disks=tuple(vm.get("disks", ())),
        session_user=vm.get("session_user", ""),
        ref=vm.get("ref", ""),
    )


def _disk_info(name: str, disk: Record) -> DiskInfo:
    return DiskInfo(name, disk["datastore"], disk["size_mb"], disk.get("attached_to", ""))


def _datastore_info(name: str, ds: Record) -> DatastoreInfo:
    return DatastoreInfo(name, ds["capacity_mb"], ds["capacity_mb"] - ds["used_mb"])


def _replica_info(name: str, vm: Record) -> ReplicaInfo:
    return ReplicaInfo(name, vm["datastore"], vm["size_mb"], vm["snapshot"])


@dataclass(frozen=True)
class SimulatorSettings:
    """None: the simulated hypervisor lives in the Redis named by the program's
    SIMULATOR_REDIS_URL, under the endpoint's name."""

    def summary(self) -> str:
        return "Simulated in Redis: no connection settings."


@dataclass(frozen=True)
class SimulatorConfig:
    url: str
    namespace: str
    step_seconds: float


class SimulatorDriver(Driver):
    @classmethod
    def configure(cls, settings: SimulatorSettings, host: Host) -> SimulatorConfig:
        return SimulatorConfig(
            host.option("SIMULATOR_REDIS_URL"),
            host.endpoint_name or "default",
            float(host.option("SIMULATOR_STEP_SECONDS")),
        )

    @classmethod
    def connect(cls, config: SimulatorConfig, host: Host) -> SimulatorDriver:
        # The portal keeps the driver, so a worker reuses one Redis connection pool.
        return cls.from_url(config.url, config.namespace, config.step_seconds)

    def __init__(
        self,
        conn: redis.Redis,
        namespace: str = "default",
        step_seconds: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.conn = conn
        self.namespace = namespace
        self.step_seconds = step_seconds
        self._prefix = f"sim:{namespace}:"
        self._rng = random.Random(seed)
        self._enter = conn.register_script(_ENTER_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str = "default",
        step_seconds: float = 0.0,
        seed: int | None = None,
    ) -> SimulatorDriver:
        return cls(redis.Redis.from_url(url), namespace, step_seconds, seed)

    def _k(self, name: str) -> str:
        return f"{self._prefix}{name}"

    # -- the two helpers every call goes through --------------------------------------------
    def _atomic(self, fn: Callable[[_State], T]) -> T:
        """Run fn against a consistent view of the inventory and apply its writes atomically.

        fn may run several times (when another process changed what it read), so it must
        have no side effects outside the _State it is given. If it raises, nothing is written.
        """
        with self.conn.pipeline() as pipe:
            for _ in range(_MAX_ATTEMPTS):
                state = _State(self._prefix, pipe)
                try:
                    result = fn(state)
                    state.commit()
                    return result
                except redis.WatchError:
                    continue
        raise DriverTimeout("simulator: inventory too busy to commit a change")

    @contextmanager
    def _mutating(self, method: str, target: str) -> Iterator[None]:
        """Log the call, count it in flight while it runs, wait, then maybe fail it.

        The simulated failure comes before the body, so a failed call changed nothing and a
        retry starts clean.
        """
        call = json.dumps([method, target])
        self.conn.rpush(self._k("log"), call)
        self._enter(
            keys=[self._k("in_flight"), self._k("peak"), self._k("on_vm"), self._k("overlaps")],
            args=[target, call],
        )
        try:
            if self.step_seconds:
                time.sleep(self.step_seconds)
            self._raise_if_failing(method, target)
            yield
        finally:
            with self.conn.pipeline(transaction=False) as pipe:
                pipe.decr(self._k("in_flight"))
                pipe.hincrby(self._k("on_vm"), target, -1)
                pipe.execute()

    def _raise_if_failing(self, method: str, target: str) -> None:
        by_name = self.conn.smismember(
            self._k("failures"), [json.dumps([target, None]), json.dumps([target, method])]
        )
        rate, spared, outage = self.conn.mget(
            self._k("fail_rate"), self._k("fail_rate_spares"), self._k("outage")
        )
        if outage:
            raise Unreachable(f"simulator: {method} on {target}: the hypervisor does not answer")
        if spared and method in json.loads(spared):
            rate = None
        if any(by_name) or (rate and self._rng.random() < float(rate)):
            raise DriverError(f"simulated failure: {method} on {target}")

    def _answering(self) -> None:
        """Reads fail too while the hypervisor is down (set_outage)."""
        if self.conn.exists(self._k("outage")):
            raise Unreachable("simulator: the hypervisor does not answer")

    def _new_ref(self) -> str:
        # Ids wasted by a retried transaction do not matter; they only need to be unique.
        return f"sim-vm-{self.conn.incr(self._k('seq'))}"

    # -- control methods (tests, demo, management commands) ---------------------------------
    def add_datastore(self, name: str, capacity_mb: int, used_mb: int = 0) -> DatastoreInfo:
        def run(state: _State) -> DatastoreInfo:
            ds = state.get("ds", name) or {"used_mb": used_mb}
            ds["capacity_mb"] = capacity_mb
            state.put("ds", name, ds)
            return _datastore_info(name, ds)

        return self._atomic(run)

    def add_parent_vm(
        self,
        name: str,
        snapshots: list[str],
        datastore: str = "",
        disk_mb: int = 0,
        used_mb: int = 0,
    ) -> None:
        def run(state: _State) -> None:
            vm = state.get("vm", name)
            if vm is not None and vm["kind"] != "parent":
                raise DriverError(f"name {name} already in use")
            vm = vm or {"kind": "parent", "power": POWER_OFF, "ref": self._new_ref()}
            vm.update(
                datastore=datastore, snapshots=list(snapshots), disk_mb=disk_mb, used_mb=used_mb
            )
            state.put("vm", name, vm)

        self._atomic(run)

    def add_snapshot(self, parent_vm: str, snapshot: str) -> None:
        """A new snapshot of a golden image (what an image pipeline's build, Packer say,
        leaves on a real hypervisor), ready to register as an image version."""

        def run(state: _State) -> None:
            vm = state.get("vm", parent_vm)
            if vm is None or vm["kind"] != "parent":
                raise NotFound(f"parent VM {parent_vm} not found")
            if snapshot in vm["snapshots"]:
                raise DriverError(f"{parent_vm} already has a snapshot {snapshot}")
            vm["snapshots"].append(snapshot)
            state.put("vm", parent_vm, vm)

        self._atomic(run)

    def fail_desktop(self, name: str, step: str | None = None) -> None:
        self.conn.sadd(self._k("failures"), json.dumps([name, step]))

    def clear_failures(self) -> None:
        self.conn.delete(
            self._k("failures"),
            self._k("fail_rate"),
            self._k("fail_rate_spares"),
            self._k("outage"),
        )

    def set_outage(self, seconds: float) -> None:
        """The hypervisor answers nothing for `seconds` (0: back now): every call raises
        Unreachable, as a vCenter that is restarting or cut off would."""
        if seconds > 0:
            self.conn.set(self._k("outage"), "1", px=int(seconds * 1000))
        else:
            self.conn.delete(self._k("outage"))

    def set_fail_rate(self, rate: float, sparing: Iterable[str] = ()) -> None:
        """Each call fails with probability `rate`, but calls of the methods named in
        `sparing` (a test about desktops failing spares clone_replica, whose failure fails
        the whole operation before any desktop)."""
        with self.conn.pipeline() as pipe:
            pipe.set(self._k("fail_rate"), rate)
            pipe.set(self._k("fail_rate_spares"), json.dumps(sorted(sparing)))
            pipe.execute()

    def simulate_usage(self, vm: str, mb: int) -> None:
        """The user writes mb MiB to the desktop's system disk: its delta grows."""

        def run(state: _State) -> None:
            record = _need_vm(state, vm)
            _allocate(state, record["datastore"], mb)
            record["delta_mb"] += mb
            state.put("vm", vm, record)

        self._atomic(run)

    def start_session(self, vm: str, user: str) -> None:
        def run(state: _State) -> None:
            record = _need_vm(state, vm)
            if record["power"] != POWER_ON:
                raise InvalidPowerState(f"{vm} is powered off; nobody can log on")
            record["session_user"] = user
            state.put("vm", vm, record)

        self._atomic(run)

    def end_session(self, vm: str) -> None:
        def run(state: _State) -> None:
            record = _need_vm(state, vm)
            record["session_user"] = ""
            state.put("vm", vm, record)

        self._atomic(run)

    def vanish(self, name: str) -> None:
        """Delete a VM behind the portal's back, as an administrator in vCenter would."""

        def run(state: _State) -> None:
            vm = state.get("vm", name)
            if vm is None:
                return
            if vm.get("datastore") and vm["kind"] != "parent":
                _allocate(state, vm["datastore"], -_vm_space(vm))
            for disk_name in vm.get("disks", []):
                disk = state.get("disk", disk_name)
                if disk is not None:
                    disk["attached_to"] = ""
                    state.put("disk", disk_name, disk)
            state.delete("vm", name)

        self._atomic(run)

    def reset(self) -> None:
        keys = list(self.conn.scan_iter(match=f"{self._prefix}*", count=1000))
        if keys:
            self.conn.delete(*keys)

    def in_flight(self) -> int:
        return int(self.conn.get(self._k("in_flight")) or 0)

    def peak_in_flight(self) -> int:
        return int(self.conn.get(self._k("peak")) or 0)

    def reset_peak(self) -> None:
        self.conn.set(self._k("peak"), self.in_flight())

    def overlapping_calls(self) -> list[tuple[str, str]]:
        """Calls that started on a VM (or disk, or datastore) while another call on it was
        still running: (method, target) of the later one."""
        return [tuple(json.loads(item)) for item in self.conn.lrange(self._k("overlaps"), 0, -1)]

    def call_log(self) -> list[tuple[str, str]]:
        """Every mutating call attempted, in order, failed ones included."""
        return [tuple(json.loads(item)) for item in self.conn.lrange(self._k("log"), 0, -1)]

    # -- inventory -------------------------------------------------------------------------
    def datastores(self) -> list[DatastoreInfo]:
        self._answering()
        return self._atomic(
            lambda state: [_datastore_info(n, ds) for n, ds in state.all("ds").items()]
        )

    def inventory(self) -> Inventory:
        self._answering()

        def run(state: _State) -> Inventory:
            return Inventory(
                datastores=[_datastore_info(n, ds) for n, ds in state.all("ds").items()],
                vms=[_vm_info(n, vm) for n, vm in state.all("vm").items()],
                disks=[_disk_info(n, disk) for n, disk in state.all("disk").items()],
            )

        return self._atomic(run)

    def get_vm(self, name: str) -> VmInfo:
        raw, outage = self.conn.mget(self._k(f"vm:{name}"), self._k("outage"))
        if outage:
            raise Unreachable(f"simulator: read {name}: the hypervisor does not answer")
        if raw is None:
            raise NotFound(f"VM {name} not found")
        return _vm_info(name, json.loads(raw))

    def describe_image(self, parent_vm: str, snapshot: str, parent_ref: str = "") -> ImageRef:
        self._answering()
        raw = self.conn.get(self._k(f"vm:{parent_vm}"))
        parent = json.loads(raw) if raw else None
        if parent is None or parent["kind"] != "parent":
            raise NotFound(f"parent VM {parent_vm} not found")
        if snapshot not in parent["snapshots"]:
            raise NotFound(f"snapshot {snapshot} of {parent_vm} not found")
        return ImageRef(
            parent_vm,
            snapshot,
            disk_mb=parent.get("disk_mb", 0),
            used_mb=parent.get("used_mb", 0),
            parent_ref=parent["ref"],
            snapshot_ref=f"{parent['ref']}/{snapshot}",
        )

    # -- replicas --------------------------------------------------------------------------
    def clone_replica(self, image: ImageRef, datastore: str, name: str) -> ReplicaInfo:
        def run(state: _State) -> ReplicaInfo:
            source = [image.parent_vm, image.snapshot]
            existing = state.get("vm", name)
            if existing is not None:
                if (
                    existing["kind"] == "replica"
                    and existing["datastore"] == datastore
                    and existing["source"] == source
                ):
                    return _replica_info(name, existing)
                raise DriverError(f"name {name} already in use")
            parent = state.get("vm", image.parent_vm)
            if parent is None or parent["kind"] != "parent":
                raise NotFound(f"parent VM {image.parent_vm} not found")
            if image.snapshot not in parent["snapshots"]:
                raise NotFound(f"snapshot {image.snapshot} of {image.parent_vm} not found")
            _allocate(state, datastore, image.used_mb)
            replica = {
                "kind": "replica",
                "datastore": datastore,
                "power": POWER_OFF,
                "size_mb": image.used_mb,
                "snapshot": REPLICA_SNAPSHOT,
                "source": source,
                "ref": self._new_ref(),
            }
            state.put("vm", name, replica)
            return _replica_info(name, replica)

        with self._mutating("clone_replica", name):
            return self._atomic(run)

    def delete_replica(self, name: str) -> None:
        def run(state: _State) -> None:
            replica = state.get("vm", name)
            if replica is None:
                return
            if replica["kind"] != "replica":
                raise DriverError(f"{name} is a {replica['kind']} VM, not a replica")
            users = [n for n, vm in state.all("vm").items() if vm.get("replica") == name]
            if users:
                raise DriverError(f"replica {name} is still used by {', '.join(users)}")
            _allocate(state, replica["datastore"], -replica["size_mb"])
            state.delete("vm", name)

        with self._mutating("delete_replica", name):
            self._atomic(run)

    # -- desktops --------------------------------------------------------------------------
    def create_linked_clone(self, name: str, replica: ReplicaInfo, datastore: str) -> VmInfo:
        def run(state: _State) -> VmInfo:
            existing = state.get("vm", name)
            if existing is not None:
                if (
                    existing["kind"] == "clone"
                    and existing["replica"] == replica.name
                    and existing["datastore"] == datastore
                ):
                    return _vm_info(name, existing)
                raise DriverError(f"name {name} already in use")
            source = _need_vm(state, replica.name, "replica")
            if source["datastore"] != datastore:
                raise DriverError(
                    f"replica {replica.name} is on {source['datastore']}, not {datastore}"
                )
            _allocate(state, datastore, CLONE_DELTA_MB)
            clone = {
                "kind": "clone",
                "datastore": datastore,
                "power": POWER_OFF,
                "replica": replica.name,
                "delta_mb": CLONE_DELTA_MB,
                "checkpoint": "",
                "checkpoint_delta_mb": 0,
                "checkpoints_taken": 0,
                "customized": None,
                "disks": [],
                "session_user": "",
                "ref": self._new_ref(),
            }
            state.put("vm", name, clone)
            return _vm_info(name, clone)

        with self._mutating("create_linked_clone", name):
            # Checked before touching Redis: our design never links across datastores.
            if replica.datastore != datastore:
                raise DriverError(
                    f"linked clone {name} must be on its replica's datastore "
                    f"{replica.datastore}, not {datastore}"
                )
            return self._atomic(run)

    def customize(self, name: str, spec: CustomizationSpec) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            _need_power_off(vm, name, "customize")
            wanted = [spec.computer_name, spec.domain]
            if vm["customized"] == wanted:
                return  # already done since the delta was created: a retry after a crash
            if not vm["replica"]:
                raise DriverError(f"{name} has no system disk to customize")
            _allocate(state, vm["datastore"], CUSTOMIZE_DELTA_MB)
            vm["delta_mb"] += CUSTOMIZE_DELTA_MB
            vm["customized"] = wanted
            state.put("vm", name, vm)

        with self._mutating("customize", name):
            self._atomic(run)

    def checkpoint(self, name: str) -> str:
        def run(state: _State) -> str:
            vm = _need_vm(state, name)
            if not vm["replica"]:
                raise DriverError(f"{name} has no system disk to checkpoint")
            if vm["checkpoint"]:
                return vm["checkpoint"]  # taken already (a retry); a rebuild clears it
            vm["checkpoints_taken"] += 1
            vm["checkpoint"] = f"{name}-cp-{vm['checkpoints_taken']}"
            vm["checkpoint_delta_mb"] = vm["delta_mb"]
            state.put("vm", name, vm)
            return vm["checkpoint"]

        with self._mutating("checkpoint", name):
            return self._atomic(run)

    def revert(self, name: str, checkpoint: str) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            if not checkpoint or vm["checkpoint"] != checkpoint:
                raise NotFound(f"checkpoint {checkpoint} of {name} not found")
            _allocate(state, vm["datastore"], vm["checkpoint_delta_mb"] - vm["delta_mb"])
            vm.update(delta_mb=vm["checkpoint_delta_mb"], power=POWER_OFF, session_user="")
            state.put("vm", name, vm)

        with self._mutating("revert", name):
            self._atomic(run)

    def relink(self, name: str, replica: ReplicaInfo) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            _need_power_off(vm, name, "relink")
            source = _need_vm(state, replica.name, "replica")
            if source["datastore"] != vm["datastore"]:
                raise DriverError(
                    f"replica {replica.name} is on {source['datastore']}, "
                    f"{name} on {vm['datastore']}"
                )
            # A delta still in place is replaced, so only the difference is allocated.
            _allocate(state, vm["datastore"], CLONE_DELTA_MB - vm["delta_mb"])
            vm.update(
                replica=replica.name,
                delta_mb=CLONE_DELTA_MB,
                checkpoint="",
                checkpoint_delta_mb=0,
                customized=None,
            )
            state.put("vm", name, vm)

        with self._mutating("relink", name):
            self._atomic(run)

    def delete_vm(self, name: str) -> None:
        def run(state: _State) -> None:
            vm = state.get("vm", name)
            if vm is None:
                return
            if vm["kind"] != "clone":
                raise DriverError(f"{name} is a {vm['kind']} VM, not a desktop")
            if vm["disks"]:
                raise DriverError(
                    f"{name} still has persistent disks attached: {', '.join(vm['disks'])}"
                )
            _need_power_off(vm, name, "delete_vm")
            _allocate(state, vm["datastore"], -vm["delta_mb"])
            state.delete("vm", name)

        with self._mutating("delete_vm", name):
            self._atomic(run)

    def move_vm(self, name: str, datastore: str) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            if vm["datastore"] == datastore:
                return
            if vm["disks"]:
                # Disks travel separately (detach, move_disk, attach) so none is ever lost.
                raise DriverError(f"detach the persistent disks of {name} before moving it")
            _need_power_off(vm, name, "move_vm")
            _allocate(state, vm["datastore"], -vm["delta_mb"])
            _allocate(state, datastore, vm["delta_mb"])
            vm["datastore"] = datastore
            state.put("vm", name, vm)

        with self._mutating("move_vm", name):
            self._atomic(run)

    # -- persistent disks ------------------------------------------------------------------
    def create_disk(self, name: str, datastore: str, size_mb: int) -> DiskInfo:
        def run(state: _State) -> DiskInfo:
            existing = state.get("disk", name)
            if existing is not None:
                if existing["datastore"] == datastore and existing["size_mb"] == size_mb:
                    return _disk_info(name, existing)
                raise DriverError(f"disk name {name} already in use")
            _allocate(state, datastore, size_mb)
            disk = {"datastore": datastore, "size_mb": size_mb, "attached_to": ""}
            state.put("disk", name, disk)
            return _disk_info(name, disk)

        with self._mutating("create_disk", name):
            return self._atomic(run)

    def attach_disk(self, vm: str, disk: str, datastore: str) -> None:
        def run(state: _State) -> None:
            record = _need_vm(state, vm)
            disk_record = _need_disk(state, disk, datastore)
            if disk_record["attached_to"] == vm:
                return
            if disk_record["attached_to"]:
                raise DriverError(f"disk {disk} is attached to {disk_record['attached_to']}")
            disk_record["attached_to"] = vm
            record["disks"] = sorted({*record["disks"], disk})
            state.put("disk", disk, disk_record)
            state.put("vm", vm, record)

        with self._mutating("attach_disk", vm):
            self._atomic(run)

    def detach_disk(self, vm: str, disk: str) -> None:
        def run(state: _State) -> None:
            disk_record = state.get("disk", disk)
            if disk_record is None or not disk_record["attached_to"]:
                return  # no such disk, or attached to nothing: nothing to detach
            if disk_record["attached_to"] != vm:
                raise DriverError(f"disk {disk} is attached to {disk_record['attached_to']}")
            disk_record["attached_to"] = ""
            state.put("disk", disk, disk_record)
            record = state.get("vm", vm)
            if record is not None:
                record["disks"] = [d for d in record["disks"] if d != disk]
                state.put("vm", vm, record)

        with self._mutating("detach_disk", vm):
            self._atomic(run)

    def move_disk(self, disk: str, source: str, target: str) -> None:
        datastore = target

        def run(state: _State) -> None:
            record = _need_disk(state, disk)
            if record["datastore"] == datastore:
                return  # moved already (a retry)
            if record["datastore"] != source:
                raise NotFound(f"disk {disk} is not on {source}")
            if record["attached_to"]:
                raise DriverError(f"detach disk {disk} from {record['attached_to']} first")
            _allocate(state, record["datastore"], -record["size_mb"])
            _allocate(state, datastore, record["size_mb"])
            record["datastore"] = datastore
            state.put("disk", disk, record)

        with self._mutating("move_disk", disk):
            self._atomic(run)

    def delete_disk(self, disk: str, datastore: str) -> None:
        def run(state: _State) -> None:
            record = state.get("disk", disk)
            if record is None or record["datastore"] != datastore:
                return
            if record["attached_to"]:
                raise DriverError(f"disk {disk} is attached to {record['attached_to']}")
            _allocate(state, record["datastore"], -record["size_mb"])
            state.delete("disk", disk)

        with self._mutating("delete_disk", disk):
            self._atomic(run)

    # -- power and sessions ----------------------------------------------------------------
    def _set_power(self, method: str, name: str, power: str, needs: str | None = None) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            if needs is not None and vm["power"] != needs:
                raise InvalidPowerState(f"{method} needs {name} powered {needs}")
            if power == POWER_ON and not vm["replica"]:
                raise DriverError(f"{name} has no system disk to boot from")
            if vm["power"] == power and method != "restart":
                return
            vm["power"] = power
            # A stopped or rebooted guest ends whoever was logged on.
            vm["session_user"] = ""
            state.put("vm", name, vm)

        with self._mutating(method, name):
            self._atomic(run)

    def power_on(self, name: str) -> None:
        self._set_power("power_on", name, POWER_ON)

    def power_off(self, name: str) -> None:
        self._set_power("power_off", name, POWER_OFF)

    def shutdown(self, name: str) -> None:
        self._set_power("shutdown", name, POWER_OFF)

    def restart(self, name: str) -> None:
        self._set_power("restart", name, POWER_ON, needs=POWER_ON)

    def log_off(self, name: str) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            if vm["session_user"]:
                vm["session_user"] = ""
                state.put("vm", name, vm)

        with self._mutating("log_off", name):
            self._atomic(run)

    def send_message(self, name: str, text: str) -> None:
        def run(state: _State) -> None:
            vm = _need_vm(state, name)
            if vm["session_user"]:
                vm["last_message"] = text
                state.put("vm", name, vm)

        with self._mutating("send_message", name):
            self._atomic(run)

    def last_message(self, name: str) -> str:
        """Control: the last message shown on the VM (to check forced-logoff warnings)."""
        vm = self._atomic(lambda state: _need_vm(state, name))
        return vm.get("last_message", "")


register("simulator", "Simulator", SimulatorDriver, SimulatorSettings)
