"""The rebalance planner: which of a pool's desktops move to which datastore.

A pure function of plain values (no Django, no database, no driver), so every rule below is
tested directly (tests/composer/test_planner.py). DESIGN.md, "Rebalance": spread the pool's
linked clones over its selected datastores by free space, under each datastore's over-commit
limit; deselecting a datastore and rebalancing vacates it. Sizes are MiB.

The limits are those of capacity.py for new clones ("Capacity and over-commit"): a clone counts
its full parent disk (disk_mb) against capacity_mb x overcommit (factor 0 = unbounded), and its
real size (delta + persistent disks, real_mb) plus any replica it needs against real free space.

Slots. One slot is room for the largest movable desktop of the pool: slot_real = the largest
real_mb and slot_disk = the largest disk_mb among the pool's movable desktops, so any movable
desktop fits in any slot. For a datastore d, with F = the pool's unmovable desktops on d (they
stay where they are and keep using their space):

    space  = free_mb + real_mb of the pool's movable desktops on d
             - replica_mb of each of the pool's image versions with no replica on d yet
    commit = capacity_mb x overcommit - committed_mb + disk_mb of the pool's movable desktops on d
             (no limit when overcommit is 0)
    slots  = F + max(0, min(space // slot_real, commit // slot_disk))   if d is selected
    slots  = F                                                           if d is deselected

space and commit are what d would have left if the pool's movable desktops were lifted off it
and every replica the pool could need were already there. Applying a plan moves desktops and
creates replicas, which shifts MiB between the terms but leaves both sums unchanged, so the
slots do not change and planning again finds nothing to do. Filling d with at most slots
desktops, each no larger than a slot, keeps it within both limits, replicas included.

Targets (the pool's desktop count on each datastore after the plan) are apportioned by highest
averages, as capacity.place does: starting from F everywhere, desktops are handed out one at a
time to the datastore where (count + 1) / slots is lowest, up to its slots, so every selected
datastore ends at about the same fraction of its slots. Ties go to a datastore that already
holds that many of the pool's desktops (so a balanced pool stays put), then to the first name.
If the pool has more desktops than slots, the surplus has to stay where it is: first on
selected datastores already over their slots (so desktops on deselected datastores get the free
slots first), then on deselected datastores; those are reported as unplaced.

Moves. A datastore over its target sends exactly its excess (its movable desktops, first names
first); one under its target receives exactly its deficit; no other desktop moves. Since the
targets add up to the pool size, that is the fewest moves that reach the targets:

    len(moves) == sum over datastores of max(0, movable there - (target - F))
               == sum over datastores of max(0, pool desktops there - target)
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PlanDatastore:
    name: str
    capacity_mb: int
    free_mb: int  # real free space, as the hypervisor reports it
    overcommit: int  # factor: 1, 4, 7, 15; 0 = unbounded
    committed_mb: int  # parent-disk sizes of every clone on it, this pool's included
    selected: bool  # False: deselected for the pool, to be vacated
    replicas: frozenset[str] = frozenset()  # image versions with a replica here


@dataclass(frozen=True)
class PlanDesktop:
    name: str
    datastore: str
    image_version: str
    disk_mb: int  # parent disk size: counts against over-commit
    real_mb: int  # real space that moves with it: delta disk + persistent disks
    movable: bool = True  # False: busy or has a pending schedule; it stays put


@dataclass(frozen=True)
class Move:
    desktop: str
    source: str
    target: str


@dataclass(frozen=True)
class DatastoreUsage:
    capacity_mb: int
    overcommit_limit_mb: int | None  # capacity x factor; None when unbounded
    real_used_before_mb: int
    real_used_after_mb: int
    committed_before_mb: int
    committed_after_mb: int


@dataclass(frozen=True)
class Plan:
    moves: list[Move]  # by desktop name
    unplaced: list[str]  # desktops left on deselected datastores, by name
    reasons: dict[str, str]  # unplaced desktop -> why
    targets: dict[str, int]  # datastore -> the pool's desktops it holds after the plan
    replicas_needed: list[tuple[str, str]]  # (image version, datastore) to clone first
    usage: dict[str, DatastoreUsage]  # datastore -> before/after, for the preview


NOT_MOVABLE = "busy or has a pending schedule, so it cannot move now"
NO_ROOM = "no slot left on the selected datastores (over-commit or free space)"


def slots(
    datastores: Iterable[PlanDatastore],
    desktops: Iterable[PlanDesktop],
    replica_mb: Mapping[str, int],
) -> dict[str, int]:
    """Datastore name -> how many of the pool's desktops it may hold (module docstring)."""
    desktops = list(desktops)
    movable = [d for d in desktops if d.movable]
    versions = {d.image_version for d in desktops}
    fixed: dict[str, int] = defaultdict(int)
    movable_real: dict[str, int] = defaultdict(int)
    movable_disk: dict[str, int] = defaultdict(int)
    for d in desktops:
        if d.movable:
            movable_real[d.datastore] += d.real_mb
            movable_disk[d.datastore] += d.disk_mb
        else:
            fixed[d.datastore] += 1
    # Any movable desktop fits in one slot.
    slot_real = max((d.real_mb for d in movable), default=1)
    slot_disk = max((d.disk_mb for d in movable), default=1)
    result = {}
    for ds in datastores:
        if not ds.selected or not movable:
            # Nothing may come here (or nothing can move at all): it holds what stays.
            result[ds.name] = fixed[ds.name]
            continue
        missing = sum(replica_mb[v] for v in versions - ds.replicas)
        space = ds.free_mb + movable_real[ds.name] - missing
        free_slots = space // slot_real
        if ds.overcommit:
            commit = ds.capacity_mb * ds.overcommit - ds.committed_mb + movable_disk[ds.name]
            free_slots = min(free_slots, commit // slot_disk)
        result[ds.name] = fixed[ds.name] + max(0, free_slots)
    return result


def plan(
    datastores: Iterable[PlanDatastore],
    desktops: Iterable[PlanDesktop],
    replica_mb: Mapping[str, int],
) -> Plan:
    """The moves that rebalance one pool's desktops over its datastores (module docstring)."""
    # Sorted by name up front: the same input in any order gives the same plan.
    datastores = sorted(datastores, key=lambda ds: ds.name)
    desktops = sorted(desktops, key=lambda d: d.name)
    _check(datastores, desktops, replica_mb)

    names = [ds.name for ds in datastores]
    selected = {ds.name for ds in datastores if ds.selected}
    room = slots(datastores, desktops, replica_mb)
    on: dict[str, list[PlanDesktop]] = {n: [] for n in names}
    for d in desktops:
        on[d.datastore].append(d)
    current = {n: len(on[n]) for n in names}
    targets = {n: sum(not d.movable for d in on[n]) for n in names}

    # 1. Fill the slots, in proportion to them (a deselected datastore's slots are its
    #    unmovable desktops, so it takes nothing).
    total = len(desktops)
    _apportion(targets, room, room, min(total, sum(room.values())), current)
    # 2. Surplus: selected datastores over their slots keep some of what they hold already.
    caps = {n: max(targets[n], current[n]) if n in selected else targets[n] for n in names}
    _apportion(targets, caps, room, min(total, sum(caps.values())), current)
    # 3. What is left stays on deselected datastores, in proportion to what each holds.
    caps = {n: targets[n] if n in selected else max(targets[n], current[n]) for n in names}
    _apportion(targets, caps, current, total, current)

    # Each datastore over its target sends its excess, first names first.
    leaving: dict[str, deque[PlanDesktop]] = defaultdict(deque)  # by image version
    for n in names:
        excess = current[n] - targets[n]
        for d in [d for d in on[n] if d.movable][: max(0, excess)]:
            leaving[d.image_version].append(d)
    # Each datastore under its target takes its deficit, preferring image versions with a
    # replica there already (saves cloning one; the slots reserve every replica anyway).
    moves = []
    replicas_needed = set()
    by_name = {ds.name: ds for ds in datastores}
    for n in names:
        wanted = targets[n] - current[n]
        have = by_name[n].replicas
        for version in sorted(leaving, key=lambda v: (v not in have, v)):
            queue = leaving[version]
            while wanted > 0 and queue:
                d = queue.popleft()
                moves.append(Move(d.name, d.datastore, n))
                if version not in have:
                    replicas_needed.add((version, n))
                wanted -= 1
    moves.sort(key=lambda m: m.desktop)

    moved = {m.desktop for m in moves}
    reasons = {
        d.name: NO_ROOM if d.movable else NOT_MOVABLE
        for d in desktops
        if d.datastore not in selected and d.name not in moved
    }
    draft = Plan(moves, sorted(reasons), reasons, targets, sorted(replicas_needed), {})
    # The preview's "after" is what apply() computes, so the two cannot disagree.
    after, _ = apply(datastores, desktops, draft, replica_mb)
    usage = {
        ds.name: DatastoreUsage(
            capacity_mb=ds.capacity_mb,
            overcommit_limit_mb=ds.capacity_mb * ds.overcommit if ds.overcommit else None,
            real_used_before_mb=ds.capacity_mb - ds.free_mb,
            real_used_after_mb=new.capacity_mb - new.free_mb,
            committed_before_mb=ds.committed_mb,
            committed_after_mb=new.committed_mb,
        )
        for ds, new in zip(datastores, after, strict=True)
    }
    return replace(draft, usage=usage)


def apply(
    datastores: Iterable[PlanDatastore],
    desktops: Iterable[PlanDesktop],
    plan: Plan,
    replica_mb: Mapping[str, int],
) -> tuple[list[PlanDatastore], list[PlanDesktop]]:
    """The datastores and desktops as they will be once the plan has run (same order as given).

    Each needed replica is created (its real size taken from free space); each moved desktop
    takes its real size and parent disk from its source to its target.
    """
    datastores, desktops = list(datastores), list(desktops)
    free = {ds.name: ds.free_mb for ds in datastores}
    committed = {ds.name: ds.committed_mb for ds in datastores}
    replicas = {ds.name: set(ds.replicas) for ds in datastores}
    for version, n in plan.replicas_needed:
        free[n] -= replica_mb[version]
        replicas[n].add(version)
    by_name = {d.name: d for d in desktops}
    where = {}
    for m in plan.moves:
        d = by_name[m.desktop]
        if d.datastore != m.source:
            raise ValueError(f"{d.name} is on {d.datastore}, not {m.source}")
        free[m.source] += d.real_mb
        free[m.target] -= d.real_mb
        committed[m.source] -= d.disk_mb
        committed[m.target] += d.disk_mb
        where[d.name] = m.target
    return (
        [
            replace(
                ds,
                free_mb=free[ds.name],
                committed_mb=committed[ds.name],
                replicas=frozenset(replicas[ds.name]),
            )
            for ds in datastores
        ],
        [replace(d, datastore=where[d.name]) if d.name in where else d for d in desktops],
    )


def _apportion(
    counts: dict[str, int],
    caps: Mapping[str, int],
    weights: Mapping[str, int],
    total: int,
    current: Mapping[str, int],
) -> None:
    """Raise counts one desktop at a time until they add up to total, highest averages first.

    The next desktop goes where (count + 1) / weight is lowest, among datastores below their
    cap; ties go where the pool already has at least count + 1 desktops (no move needed), then
    to the first name. Zero weights come last. Each datastore's keys only grow, so a heap
    gives the same result as scanning every datastore each time.
    """
    need = total - sum(counts.values())
    if need <= 0:
        return
    # Exact comparison of (count + 1) / weight: scaled to integers by the weights' lcm.
    scale = math.lcm(*(w for n, w in weights.items() if w > 0 and counts[n] < caps[n]))

    def key(n: str) -> tuple[bool, int, bool, str]:
        nxt, w = counts[n] + 1, weights[n]
        return (w == 0, nxt * (scale // w) if w else nxt, nxt > current[n], n)

    heap = [key(n) for n in counts if counts[n] < caps[n]]
    heapq.heapify(heap)
    for _ in range(need):
        n = heapq.heappop(heap)[-1]
        counts[n] += 1
        if counts[n] < caps[n]:
            heapq.heappush(heap, key(n))


def _check(
    datastores: list[PlanDatastore], desktops: list[PlanDesktop], replica_mb: Mapping[str, int]
) -> None:
    names = [ds.name for ds in datastores]
    if len(set(names)) != len(names):
        raise ValueError("datastore names must be unique")
    if len({d.name for d in desktops}) != len(desktops):
        raise ValueError("desktop names must be unique")
    if any(ds.overcommit < 0 for ds in datastores):
        raise ValueError("over-commit factors must be 0 (unbounded) or more")
    known = set(names)
    for d in desktops:
        if d.datastore not in known:
            raise ValueError(f"{d.name} is on {d.datastore}, which is not in the datastores")
        if d.disk_mb <= 0 or d.real_mb <= 0:
            raise ValueError(f"{d.name}: disk_mb and real_mb must be positive")
        if d.image_version not in replica_mb:
            raise ValueError(f"{d.name}: no replica size for image version {d.image_version}")
