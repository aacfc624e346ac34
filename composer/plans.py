"""Plans an administrator approves before a rebalance or a recompose runs.

A plan is worked out from the inventory (with free space fresh from the hypervisor), frozen
as JSON on the Operation, and shown as the preview. The job executes exactly that plan, after
check() confirms the inventory still matches it; otherwise it refuses and nothing moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Sum

from composer import inventory, rebalance_planner
from composer.models import DesktopTask, Operation
from pools.models import Datastore, Desktop, ImageVersion, PersistentDisk, Pool, Replica
from pools.states import DesktopState

S = DesktopState
TaskStatus = DesktopTask.Status

# DESIGN: only these desktops are moved by a rebalance; others are reported, not touched.
MOVABLE_STATES = (S.AVAILABLE, S.PROVISIONED, S.ERROR, S.CUSTOMIZING)


@dataclass
class FrozenPlan:
    data: dict
    # (desktop, status, error, target datastore) for each task to create.
    tasks: list[tuple[Desktop, str, str, Datastore | None]] = field(default_factory=list)

    def as_json(self) -> dict:
        return self.data

    def create_tasks(self, operation: Operation) -> None:
        DesktopTask.objects.bulk_create(
            DesktopTask(
                operation=operation,
                desktop=desktop,
                desktop_name=desktop.name,
                status=status,
                error=error,
                target_datastore=target,
            )
            for desktop, status, error, target in self.tasks
        )


def _pending_schedules(desktops: list[Desktop]) -> dict[int, int]:
    return dict(
        DesktopTask.objects.scheduled()
        .filter(desktop__in=desktops)
        .values_list("desktop_id", "operation_id")
    )


def _disk_sizes(desktops) -> dict[int, int]:
    return dict(
        PersistentDisk.objects.filter(desktop__in=desktops)
        .values_list("desktop_id")
        .annotate(total=Sum("size_mb"))
        .order_by()
    )


def _usage_json(usage: rebalance_planner.DatastoreUsage) -> dict:
    return {
        "capacity_mb": usage.capacity_mb,
        "overcommit_limit_mb": usage.overcommit_limit_mb,
        "real_before_mb": usage.real_used_before_mb,
        "real_after_mb": usage.real_used_after_mb,
        "committed_before_mb": usage.committed_before_mb,
        "committed_after_mb": usage.committed_after_mb,
    }


def plan_rebalance(pool: Pool, chosen: list[Desktop], busy: dict[int, int]) -> FrozenPlan:
    inventory.sync_datastores(pool.endpoint)
    links = {link.datastore_id: link for link in pool.pool_datastores.select_related("datastore")}
    all_desktops = list(
        pool.desktops.select_related("datastore", "image_version__image").order_by("name")
    )
    # Datastores the pool's desktops sit on but that are no longer linked count as deselected.
    datastore_ids = set(links) | {d.datastore_id for d in all_desktops}
    datastores = {ds.pk: ds for ds in Datastore.objects.filter(pk__in=datastore_ids)}
    committed = Desktop.objects.committed_mb_by_datastore(datastore_ids)
    ready_replicas: dict[int, set[str]] = {}
    for ds_id, version_id in Replica.objects.filter(
        datastore_id__in=datastore_ids, status=Replica.Status.READY
    ).values_list("datastore_id", "image_version_id"):
        ready_replicas.setdefault(ds_id, set()).add(str(version_id))

    chosen_ids = {d.pk for d in chosen}
    scheduled = _pending_schedules(all_desktops)
    disks = _disk_sizes(all_desktops)
    not_moved: dict[str, str] = {}
    plan_desktops = []
    for d in all_desktops:
        reason = ""
        if d.pk not in chosen_ids:
            reason = "not selected"
        elif d.pk in busy:
            reason = f"busy in operation #{busy[d.pk]}"
        elif d.pk in scheduled:
            reason = f"has a pending schedule (operation #{scheduled[d.pk]})"
        elif d.state not in MOVABLE_STATES:
            reason = (
                f"{d.get_state_display()}: only Available, Provisioned, Error or "
                "Customizing desktops move"
            )
        if reason and d.pk in chosen_ids:
            not_moved[d.name] = reason
        plan_desktops.append(
            rebalance_planner.PlanDesktop(
                name=d.name,
                datastore=datastores[d.datastore_id].name,
                image_version=str(d.image_version_id),
                disk_mb=d.image_version.disk_mb,
                real_mb=max(1, d.delta_mb + disks.get(d.pk, 0)),
                movable=not reason,
            )
        )
    plan_datastores = [
        rebalance_planner.PlanDatastore(
            name=ds.name,
            capacity_mb=ds.capacity_mb,
            free_mb=ds.free_mb,
            overcommit=links[ds.pk].overcommit if ds.pk in links else 1,
            committed_mb=committed.get(ds.pk, 0),
            # A datastore the hypervisor no longer lists is vacated, never a target.
            selected=ds.pk in links and links[ds.pk].selected and not ds.gone,
            replicas=frozenset(ready_replicas.get(ds.pk, set())),
        )
        for ds in datastores.values()
    ]
    versions = {str(d.image_version_id): d.image_version for d in all_desktops}
    result = rebalance_planner.plan(
        plan_datastores, plan_desktops, {k: v.used_mb for k, v in versions.items()}
    )

    by_name = {d.name: d for d in all_desktops}
    ds_by_name = {ds.name: ds for ds in datastores.values()}
    tasks = [
        (by_name[m.desktop], TaskStatus.PENDING, "", ds_by_name[m.target]) for m in result.moves
    ]
    for name in result.unplaced:
        tasks.append((by_name[name], TaskStatus.SKIPPED, result.reasons[name], None))
    data = {
        "kind": "rebalance",
        "moves": [
            {
                "desktop": m.desktop,
                "desktop_id": by_name[m.desktop].pk,
                "from": m.source,
                "to": m.target,
                "from_id": ds_by_name[m.source].pk,
                "to_id": ds_by_name[m.target].pk,
                "real_mb": next(p.real_mb for p in plan_desktops if p.name == m.desktop),
                "disk_mb": by_name[m.desktop].image_version.disk_mb,
            }
            for m in result.moves
        ],
        "unplaced": {name: result.reasons[name] for name in result.unplaced},
        "not_moved": {k: v for k, v in not_moved.items() if k not in result.reasons},
        "targets": result.targets,
        "replicas": [
            {"image_version": str(versions[v]), "image_version_id": int(v), "datastore": n}
            for v, n in result.replicas_needed
        ],
        "usage": {name: _usage_json(u) for name, u in result.usage.items()},
        "sessions": [],
    }
    return FrozenPlan(data, tasks)


def plan_recompose(
    pool: Pool, chosen: list[Desktop], version_id: int, busy: dict[int, int]
) -> FrozenPlan:
    inventory.sync_datastores(pool.endpoint)
    target = ImageVersion.objects.select_related("image").get(pk=version_id)
    desktops = list(
        Desktop.objects.filter(pk__in=[d.pk for d in chosen])
        .select_related("datastore", "image_version__image")
        .order_by("name")
    )
    datastores = {d.datastore_id: d.datastore for d in desktops}
    have = set(
        Replica.objects.filter(
            image_version=target, datastore_id__in=datastores, status=Replica.Status.READY
        ).values_list("datastore_id", flat=True)
    )
    committed = Desktop.objects.committed_mb_by_datastore(datastores)
    factors = dict(pool.pool_datastores.values_list("datastore_id", "overcommit"))
    extra_commit: dict[int, int] = {}
    tasks, rows = [], []
    for d in desktops:
        if d.pk in busy:
            tasks.append((d, TaskStatus.SKIPPED, f"busy in operation #{busy[d.pk]}", None))
            continue
        tasks.append((d, TaskStatus.PENDING, "", None))
        extra_commit[d.datastore_id] = extra_commit.get(d.datastore_id, 0) + (
            target.disk_mb - d.image_version.disk_mb
        )
        rows.append(
            {
                "desktop": d.name,
                "desktop_id": d.pk,
                "from": str(d.image_version),
                "from_id": d.image_version_id,
                "to": str(target),
                "datastore": d.datastore.name,
                "session_user": d.session_user,
            }
        )
    needed = sorted(
        {d.datastore_id for d, status, _, _ in tasks if status == TaskStatus.PENDING} - have
    )
    usage = {}
    for ds_id, ds in datastores.items():
        replica = target.used_mb if ds_id in needed else 0
        usage[ds.name] = {
            "capacity_mb": ds.capacity_mb,
            "overcommit_limit_mb": ds.capacity_mb * factors[ds_id] if factors.get(ds_id) else None,
            "real_before_mb": ds.used_mb,
            "real_after_mb": ds.used_mb + replica,
            "committed_before_mb": committed.get(ds_id, 0),
            "committed_after_mb": committed.get(ds_id, 0) + extra_commit.get(ds_id, 0),
        }
    data = {
        "kind": "recompose",
        "image_version": str(target),
        "image_version_id": target.pk,
        "desktops": rows,
        "replicas": [
            {
                "image_version": str(target),
                "image_version_id": target.pk,
                "datastore": datastores[i].name,
            }
            for i in needed
        ],
        "usage": usage,
        "sessions": [
            {"desktop": r["desktop"], "user": r["session_user"]} for r in rows if r["session_user"]
        ],
    }
    return FrozenPlan(data, tasks)


def check_rebalance(operation: Operation) -> list[str]:
    """What no longer matches the frozen rebalance plan; empty when it still holds."""
    plan = operation.plan or {}
    problems = []
    inventory.sync_datastores(operation.pool.endpoint)
    desktops = Desktop.objects.in_bulk([m["desktop_id"] for m in plan.get("moves", [])])
    incoming_real: dict[int, int] = {}
    incoming_disk: dict[int, int] = {}
    for move in plan.get("moves", []):
        desktop = desktops.get(move["desktop_id"])
        if desktop is None:
            problems.append(f"{move['desktop']} no longer exists")
            continue
        if desktop.datastore_id != move["from_id"]:
            problems.append(f"{move['desktop']} is no longer on {move['from']}")
        if desktop.state not in MOVABLE_STATES:
            problems.append(f"{move['desktop']} is now {desktop.get_state_display()}")
        incoming_real[move["to_id"]] = incoming_real.get(move["to_id"], 0) + move["real_mb"]
        incoming_disk[move["to_id"]] = incoming_disk.get(move["to_id"], 0) + move["disk_mb"]
    replica_need: dict[str, int] = {}
    for replica in plan.get("replicas", []):
        exists = Replica.objects.filter(
            image_version_id=replica["image_version_id"],
            datastore__name=replica["datastore"],
            datastore__endpoint=operation.pool.endpoint,
            status=Replica.Status.READY,
        ).exists()
        if not exists:
            version = ImageVersion.objects.get(pk=replica["image_version_id"])
            replica_need[replica["datastore"]] = (
                replica_need.get(replica["datastore"], 0) + version.used_mb
            )
    links = {link.datastore_id: link.overcommit for link in operation.pool.pool_datastores.all()}
    committed = Desktop.objects.committed_mb_by_datastore(list(incoming_real))
    for ds in Datastore.objects.filter(pk__in=list(incoming_real)):
        needs = incoming_real[ds.pk] + replica_need.get(ds.name, 0)
        if needs > ds.free_mb:
            problems.append(
                f"{ds.name} has {ds.free_mb} MiB free, the plan needs {needs} MiB there"
            )
        factor = links.get(ds.pk, 0)
        if factor and committed.get(ds.pk, 0) + incoming_disk[ds.pk] > ds.capacity_mb * factor:
            problems.append(f"{ds.name} would go past its over-commit limit")
    return problems


def check_recompose(operation: Operation) -> list[str]:
    """What no longer matches the frozen recompose plan; empty when it still holds."""
    plan = operation.plan or {}
    problems = []
    if not ImageVersion.objects.filter(pk=plan.get("image_version_id")).exists():
        return [f"image version {plan.get('image_version')} no longer exists"]
    desktops = Desktop.objects.in_bulk([r["desktop_id"] for r in plan.get("desktops", [])])
    for row in plan.get("desktops", []):
        desktop = desktops.get(row["desktop_id"])
        if desktop is None or desktop.pool_id != operation.pool_id:
            problems.append(f"{row['desktop']} is no longer in the pool")
        elif desktop.image_version_id != row["from_id"]:
            problems.append(f"{row['desktop']} is no longer on {row['from']}")
    inventory.sync_datastores(operation.pool.endpoint)
    version = ImageVersion.objects.get(pk=plan["image_version_id"])
    for replica in plan.get("replicas", []):
        ds = Datastore.objects.get(endpoint=operation.pool.endpoint, name=replica["datastore"])
        ready = Replica.objects.filter(
            image_version=version, datastore=ds, status=Replica.Status.READY
        ).exists()
        if not ready and ds.free_mb < version.used_mb:
            problems.append(
                f"{ds.name} has {ds.free_mb} MiB free, the replica needs {version.used_mb} MiB"
            )
    return problems
