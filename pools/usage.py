"""Inventory figures the pages share: desktops by state, problems, datastore use, lineage.

Every function here answers with a fixed number of queries whatever the number of desktops:
desktops are counted by the database in GROUP BY queries that the indexes of
pools/migrations/0002_desktop_indexes.py cover, and only the handful of groups comes back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count

from pools.models import (
    WARN_PERCENT,
    BaseImage,
    Datastore,
    Desktop,
    ImageVersion,
    Pool,
    PoolDatastore,
    Replica,
)
from pools.states import DesktopState

S = DesktopState

# The order states are drawn in a bar, and the group each belongs to.
STATE_ORDER = [
    S.AVAILABLE,
    S.CONNECTED,
    S.DISCONNECTED,
    S.PROVISIONED,
    S.PROVISIONING,
    S.CUSTOMIZING,
    S.MAINTENANCE,
    S.DELETING,
    S.ERROR,
]


def legend() -> list[tuple[str, str]]:
    return [(state, S(state).label) for state in STATE_ORDER]


# -- desktops by state ------------------------------------------------------------------------


@dataclass
class Segment:
    state: str
    label: str
    count: int
    x: float  # percent from the left of the bar
    width: float  # percent of the bar


def segments(counts: dict[str, int]) -> list[Segment]:
    """A stacked bar as percentages: drawn by the template as SVG rects (x, width), which a
    Content-Security-Policy without inline styles allows."""
    total = sum(counts.values())
    shown, x = [], 0.0
    for state in STATE_ORDER:
        n = counts.get(state, 0)
        if not n:
            continue
        width = 100.0 * n / total
        shown.append(Segment(state, S(state).label, n, round(x, 3), round(width, 3)))
        x += width
    return shown


# -- datastores -------------------------------------------------------------------------------


@dataclass
class PoolOnDatastore:
    link: PoolDatastore
    desktops: int


@dataclass
class DatastoreUsage:
    datastore: Datastore
    desktops: int = 0
    committed_mb: int = 0  # each clone counted at its parent disk's full size
    factor: int | None = None  # over-commit level applied; 0 = unbounded
    factor_source: str = ""
    pools: list[PoolOnDatastore] = field(default_factory=list)
    other_pools: list[tuple[Pool, int]] = field(default_factory=list)  # desktops, no link

    @property
    def capacity_mb(self) -> int:
        return self.datastore.capacity_mb

    @property
    def used_mb(self) -> int:
        return self.datastore.used_mb

    @property
    def used_percent(self) -> float:
        return self.datastore.used_percent

    @property
    def warn(self) -> bool:
        return self.datastore.warn

    @property
    def limit_mb(self) -> int | None:
        return None if not self.factor else self.capacity_mb * self.factor

    @property
    def committed_percent(self) -> float | None:
        limit = self.limit_mb
        return 100.0 * self.committed_mb / limit if limit else None

    @property
    def committed_warn(self) -> bool:
        percent = self.committed_percent
        return percent is not None and percent >= WARN_PERCENT

    @property
    def committed_ratio(self) -> float:
        """Committed size as a multiple of capacity (1.0 = as much as the datastore holds)."""
        return self.committed_mb / self.capacity_mb if self.capacity_mb else 0.0

    @property
    def meter_used(self) -> int:
        return min(self.used_mb, self.capacity_mb)

    @property
    def meter_committed(self) -> int:
        limit = self.limit_mb
        return min(self.committed_mb, limit) if limit else 0

    @property
    def high_mark(self) -> float:
        return self.capacity_mb * WARN_PERCENT / 100

    @property
    def committed_high_mark(self) -> float:
        return (self.limit_mb or 0) * WARN_PERCENT / 100


def datastore_usage(datastores=None) -> list[DatastoreUsage]:
    """Real use, over-commit use, pools and desktop counts of each datastore.

    Over-commit use counts each clone at its parent disk's size. Each pool checks it against
    capacity x its own level for that datastore, so the limit shown is the strictest level of
    the pools that select it: the first pool to be refused more desktops. A datastore no pool
    selects shows against its own default level.

    Four queries: datastores, committed sizes (Desktop.objects.committed_mb_by_datastore),
    pool links, and one GROUP BY (pool, image version, datastore) over the desktop_lineage
    index.
    """
    datastores = list(
        datastores if datastores is not None else Datastore.objects.select_related("endpoint")
    )
    usage = {ds.pk: DatastoreUsage(ds) for ds in datastores}
    for datastore_id, committed in Desktop.objects.committed_mb_by_datastore(usage).items():
        usage[datastore_id].committed_mb = committed
    per_pool: dict[tuple[int, int], int] = defaultdict(int)
    # Grouped in the desktop_lineage index's column order, so the index answers it alone.
    for pool_id, _, datastore_id, n in (
        Desktop.objects.values_list("pool_id", "image_version_id", "datastore_id")
        .annotate(n=Count("*"))
        .order_by()
    ):
        row = usage.get(datastore_id)
        if row is None:
            continue
        row.desktops += n
        per_pool[(datastore_id, pool_id)] += n
    linked = set()
    for link in (
        PoolDatastore.objects.filter(datastore_id__in=usage)
        .select_related("pool")
        .order_by("pool__name")
    ):
        linked.add((link.datastore_id, link.pool_id))
        usage[link.datastore_id].pools.append(
            PoolOnDatastore(link, per_pool.get((link.datastore_id, link.pool_id), 0))
        )
    unlinked = {key: n for key, n in per_pool.items() if key not in linked}
    if unlinked:  # desktops left on a datastore whose link row is gone: still show them
        names = Pool.objects.in_bulk({pool_id for _, pool_id in unlinked})
        for (datastore_id, pool_id), n in sorted(unlinked.items()):
            if pool_id in names:
                usage[datastore_id].other_pools.append((names[pool_id], n))
    for row in usage.values():
        levels = [p.link.overcommit for p in row.pools if p.link.selected]
        if levels:
            bounded = [level for level in levels if level]
            row.factor = min(bounded) if bounded else 0
            row.factor_source = "strictest level of the pools using it"
        else:
            row.factor = row.datastore.overcommit
            row.factor_source = "the datastore's default level"
    return list(usage.values())


# -- images, versions, replicas ----------------------------------------------------------------


@dataclass
class ReplicaRow:
    replica: Replica
    desktops: int  # desktops reading from it
    version_on_datastore: int  # desktops of its version on its datastore (any replica)

    @property
    def unused(self) -> bool:
        return self.desktops == 0 and self.version_on_datastore == 0

    @property
    def safe_to_delete(self) -> bool:
        """composer.replicas.remove_unused's rule: no desktop reads from it and none of its
        version sits on its datastore. A replica still being cloned belongs to an operation
        preparing it, so it is never offered."""
        return self.unused and self.replica.status != Replica.Status.CREATING


@dataclass
class VersionRow:
    version: ImageVersion
    replicas: list[ReplicaRow] = field(default_factory=list)
    desktops: int = 0
    default_of: list[Pool] = field(default_factory=list)  # pools building new desktops from it
    used_by: list[tuple[Pool, int]] = field(default_factory=list)  # pools with desktops on it
    without_replica: list[tuple[Datastore, int]] = field(default_factory=list)


def lineage():
    """Base image -> versions -> replicas per datastore -> desktop counts, and pools per version.

    Six queries: images, versions, replicas, pools, datastores, and one GROUP BY
    (pool, image version, datastore, replica) over the desktop_lineage index.
    """
    images = list(BaseImage.objects.select_related("endpoint").order_by("name"))
    versions = {
        v.pk: VersionRow(v)
        for v in ImageVersion.objects.select_related("image").order_by("image__name", "created_at")
    }
    per_replica: dict[int, int] = defaultdict(int)
    per_version_ds: dict[tuple[int, int], int] = defaultdict(int)
    per_version_pool: dict[tuple[int, int], int] = defaultdict(int)
    for pool_id, version_id, datastore_id, replica_id, n in (
        Desktop.objects.values_list("pool_id", "image_version_id", "datastore_id", "replica_id")
        .annotate(n=Count("*"))
        .order_by()
    ):
        if replica_id is not None:
            per_replica[replica_id] += n
        per_version_ds[(version_id, datastore_id)] += n
        per_version_pool[(version_id, pool_id)] += n
    pools = Pool.objects.in_bulk()
    datastores = Datastore.objects.in_bulk()
    for pool in sorted(pools.values(), key=lambda p: p.name):
        if pool.image_version_id in versions:
            versions[pool.image_version_id].default_of.append(pool)
    for (version_id, pool_id), n in sorted(
        per_version_pool.items(), key=lambda item: pools[item[0][1]].name
    ):
        if version_id in versions:
            versions[version_id].used_by.append((pools[pool_id], n))
            versions[version_id].desktops += n
    with_replica = set()
    for replica in Replica.objects.select_related("datastore").order_by("datastore__name"):
        key = (replica.image_version_id, replica.datastore_id)
        with_replica.add(key)
        if replica.image_version_id in versions:
            versions[replica.image_version_id].replicas.append(
                ReplicaRow(replica, per_replica.get(replica.pk, 0), per_version_ds.get(key, 0))
            )
    for (version_id, datastore_id), n in sorted(per_version_ds.items()):
        if (version_id, datastore_id) not in with_replica and version_id in versions:
            # Desktops being provisioned before their replica exists, or left by a failure.
            versions[version_id].without_replica.append((datastores[datastore_id], n))
    by_image = defaultdict(list)
    for row in versions.values():
        by_image[row.version.image_id].append(row)
    return [(image, by_image.get(image.pk, [])) for image in images]


def overcommit_warnings(
    placement: list[tuple[str, str]], datastores, version: ImageVersion, overcommit: int
) -> list[str]:
    """What a new pool's placement would push past the warning level on the dashboard: each
    datastore's committed size (every clone at its parent disk's size) against capacity x
    the strictest over-commit level of the pools selecting it, this one's included. A 15x
    pool fits by its own level on a datastore that 4x pools share, yet turns it red."""
    added = defaultdict(int)
    for _, datastore_name in placement:
        added[datastore_name] += 1
    warnings = []
    for row in datastore_usage([ds for ds in datastores if added.get(ds.name)]):
        levels = [p.link.overcommit for p in row.pools if p.link.selected] + [overcommit]
        bounded = [level for level in levels if level]
        if not bounded or not row.capacity_mb:
            continue  # unbounded: nothing to warn against
        strictest = min(bounded)
        committed = row.committed_mb + added[row.datastore.name] * version.disk_mb
        percent = 100.0 * committed / (row.capacity_mb * strictest)
        if percent < WARN_PERCENT:
            continue
        by = [
            p.link.pool.name
            for p in row.pools
            if p.link.selected and p.link.overcommit == strictest
        ]
        whose = f"pool {', '.join(by)}'s" if by and strictest != overcommit else "this pool's"
        warnings.append(
            f"{row.datastore.name} would be {percent:.0f}% committed against {whose} "
            f"{strictest}x over-commit level (the dashboard warns from {WARN_PERCENT:.0f}%)."
        )
    return warnings
