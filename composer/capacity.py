"""How many new linked clones each datastore can take, and where new desktops go.

Pure functions over plain values: no database, no driver, so the rules are easy to test.
Two limits apply to every datastore (DESIGN.md, "Capacity and over-commit"):
- over-commit: each clone counts as the full size of its parent disk, and the datastore holds
  up to capacity x factor of them (factor 0 = unbounded);
- real free space: the replica (if the datastore needs one) and each clone's delta (plus its
  persistent disk) must fit in the space the hypervisor reports free, since a full datastore
  suspends every VM on it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Real space a new clone is planned to take right after customization: its delta disk with
# headroom. The simulator's clones take 320 MiB at that point.
NEW_CLONE_DELTA_MB = 512


@dataclass(frozen=True)
class DatastoreRoom:
    name: str
    capacity_mb: int
    free_mb: int  # real free space, less what pending work will take
    overcommit: int  # factor; 0 = unbounded
    committed_mb: int  # parent-disk sizes of the clones already on it (every pool)
    has_replica: bool  # a replica of the image version is already there


@dataclass(frozen=True)
class Room:
    name: str
    clones: int  # how many more clones fit
    limited_by: str  # "over-commit" or "free space": the limit that binds first


@dataclass(frozen=True)
class Clone:
    disk_mb: int  # parent disk size: counts against over-commit
    replica_mb: int  # real size of a replica of the image version
    extra_mb: int = 0  # persistent disk per desktop, if any

    @property
    def real_mb(self) -> int:
        return NEW_CLONE_DELTA_MB + self.extra_mb


def room(ds: DatastoreRoom, clone: Clone) -> Room:
    if ds.overcommit == 0:
        by_overcommit = None
    else:
        allowed_mb = ds.capacity_mb * ds.overcommit - ds.committed_mb
        by_overcommit = max(0, allowed_mb // clone.disk_mb)
    free = ds.free_mb - (0 if ds.has_replica else clone.replica_mb)
    by_space = max(0, free // clone.real_mb) if free > 0 else 0
    if by_overcommit is not None and by_overcommit < by_space:
        return Room(ds.name, by_overcommit, "over-commit")
    return Room(ds.name, by_space, "free space")


class DoesNotFit(Exception):
    def __init__(self, requested: int, rooms: list[Room]):
        self.requested = requested
        self.rooms = rooms
        self.available = sum(r.clones for r in rooms)
        self.shortfall = requested - self.available
        detail = "; ".join(f"{r.name}: {r.clones} more, limited by {r.limited_by}" for r in rooms)
        super().__init__(
            f"{requested} desktops do not fit: the datastores can take {self.available} "
            f"({detail}). Short by {self.shortfall} desktop{'s' if self.shortfall != 1 else ''}."
        )


def place(count: int, datastores: list[DatastoreRoom], clone: Clone) -> list[str]:
    """Datastore name for each of `count` new clones, spread in proportion to room.

    Each datastore gets a share of the clones proportional to how many it can take (its room,
    which follows its free space and over-commit limit), so a datastore with twice the room
    gets about twice the clones and every datastore fills to about the same fraction.
    Clone by clone, the next goes where (placed + 1) / room is lowest (highest-averages
    apportionment), which keeps every prefix of the list balanced too.
    Raises DoesNotFit naming the shortfall.
    """
    rooms = [room(ds, clone) for ds in datastores]
    if sum(r.clones for r in rooms) < count:
        raise DoesNotFit(count, rooms)
    size = {r.name: r.clones for r in rooms if r.clones > 0}
    placed = dict.fromkeys(size, 0)
    order = {name: i for i, name in enumerate(sorted(size))}
    placement: list[str] = []
    for _ in range(count):
        # Ties go to the name that sorts first, so placement is deterministic.
        target = min(
            (n for n in size if placed[n] < size[n]),
            key=lambda n: ((placed[n] + 1) / size[n], order[n]),
        )
        placement.append(target)
        placed[target] += 1
    return placement
