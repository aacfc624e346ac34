"""What the dashboard shows, gathered with a fixed number of queries (no query per desktop):
desktops by state per pool with problems first, datastore use, running and scheduled
operations with their estimated finish, the workers and the queue, and recent failures."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from composer import outages, progress
from composer.liveness import heartbeat_age, worker_answering
from composer.models import Operation
from composer.queue import URGENT, queue
from composer.stuck import stuck_q
from pools import usage
from pools.models import Desktop, HypervisorEndpoint, Pool
from pools.states import BUSY, READY, DesktopState
from portal import live

log = logging.getLogger(__name__)

# How far back "recent failures" looks.
RECENT = timedelta(hours=24)
# How many rows each list shows; the counters say how many there are in all.
SHOWN = 10


@dataclass
class PoolSummary:
    pool: Pool
    counts: dict[str, int]
    missing: int = 0
    stuck: int = 0
    segments: list[usage.Segment] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ready(self) -> int:
        return sum(self.counts.get(s, 0) for s in READY)

    @property
    def busy(self) -> int:
        return sum(self.counts.get(s, 0) for s in BUSY)

    @property
    def error(self) -> int:
        return self.counts.get(DesktopState.ERROR, 0)

    @property
    def problems(self) -> int:
        return self.error + self.missing + self.stuck


def pool_summaries(now=None) -> list[PoolSummary]:
    """Every pool with its desktops by state, missing and stuck: problems first.

    Four queries: the pools; one GROUP BY (pool, state) that the desktop_pool_state_name
    index answers alone; the missing ones by the partial desktop_missing index; the stuck
    ones by desktop_state_changed.
    """
    by_pool = {p.pk: PoolSummary(p, {}) for p in Pool.objects.order_by("name")}
    counted = Desktop.objects.values_list("pool_id").annotate(n=Count("*")).order_by()
    for pool_id, state, n in (
        Desktop.objects.values_list("pool_id", "state").annotate(n=Count("*")).order_by()
    ):
        by_pool[pool_id].counts[state] = n
    for pool_id, n in counted.filter(missing=True):
        by_pool[pool_id].missing = n
    for pool_id, n in counted.filter(stuck_q(now)):
        by_pool[pool_id].stuck = n
    summaries = list(by_pool.values())
    for summary in summaries:
        summary.segments = usage.segments(summary.counts)
    summaries.sort(key=lambda s: (-s.problems, s.pool.name))
    return summaries


@dataclass
class Totals:
    desktops: int = 0
    ready: int = 0
    busy: int = 0
    error: int = 0
    missing: int = 0
    stuck: int = 0

    @property
    def problems(self) -> int:
        return self.error + self.missing + self.stuck


# The dashboard's two live parts: what moves while work runs (counters, operations, workers),
# polled every POLL_SECONDS then; and the overview (problems, pools, datastores, failures),
# polled every IDLE_POLL_SECONDS. Each is small enough to send to dozens of watchers.
PARTS = ("activity", "overview")


def gather(user, part: str | None = None, stamps: tuple = ()) -> dict:
    """The dashboard's context for this user: each section only if the role may see it, and
    only those of one part when `part` is given (a poll). `stamps` (live.dashboard_stamps)
    lets the watchers of one state of the estate share its counting."""
    now = timezone.now()
    context: dict = {"now": now}

    def shared(name, compute):
        return live.memo((name, *stamps), compute) if stamps else compute()

    activity, overview = part in (None, "activity"), part in (None, "overview")
    if user.has_perm("pools.view_pool"):
        summaries = shared("pool_summaries", lambda: pool_summaries(now=now))
        totals = Totals()
        for s in summaries:
            totals.desktops += s.total
            totals.ready += s.ready
            totals.busy += s.busy
            totals.error += s.error
            totals.missing += s.missing
            totals.stuck += s.stuck
        context["totals"] = totals
        if overview:
            context["pools"] = summaries
            context["legend_states"] = usage.legend()
            if user.has_perm("pools.view_desktop") and totals.problems:
                context["problem_desktops"] = problem_desktops(now)
    if overview and user.has_perm("pools.view_datastore"):
        context["datastores"] = shared("datastore_usage", usage.datastore_usage)
    if user.has_perm("composer.view_operation"):
        if activity:
            context.update(operations(now))
            context["workers"] = workers()
            # Noted in Redis while the database was down (composer/outages.py).
            context["database_outage"] = outages.last_database_outage()
        if overview:
            context.update(failures(now))
    if overview and user.has_perm("pools.view_hypervisorendpoint"):
        # A hypervisor the reconciler cannot read, or VMs of ours nobody owns.
        context["hypervisor_problems"] = [
            e for e in HypervisorEndpoint.objects.order_by("name") if e.sync_error or e.orphans
        ]
    return context


def problem_desktops(now) -> list[Desktop]:
    """The most recent desktops in Error, missing or stuck, each marked with why it shows.

    One query per kind of problem, each answered by its own index, then merged: an OR of the
    three would read every desktop."""
    shown = {}
    for why, condition in (
        ("error", Q(state=DesktopState.ERROR)),
        ("missing", Q(missing=True)),
        ("stuck", stuck_q(now)),
    ):
        for desktop in (
            Desktop.objects.filter(condition)
            .select_related("pool")
            .order_by("-state_changed_at")[:SHOWN]
        ):
            desktop = shown.setdefault(desktop.pk, desktop)
            setattr(desktop, why, True)
    rows = sorted(shown.values(), key=lambda d: (d.state_changed_at, d.name), reverse=True)
    return rows[:SHOWN]


def operations(now) -> dict:
    S = Operation.Status
    running = progress.attach_remaining(
        progress.attach_all(
            Operation.objects.filter(status__in=[S.QUEUED, S.RUNNING, S.PAUSED, S.CANCELLING])
            .select_related("requested_by")
            .order_by("requested_at")[:SHOWN]
        ),
        now,
    )
    for op in running:
        op.finish_at = now + op.remaining if op.remaining is not None else None
    scheduled = progress.attach_all(
        Operation.objects.filter(status=S.SCHEDULED)
        .select_related("requested_by")
        .order_by("scheduled_for")[:SHOWN]
    )
    return {"running_operations": running, "scheduled_operations": scheduled}


def failures(now) -> dict:
    S = Operation.Status
    failed = Operation.objects.filter(
        status__in=[S.FAILED, S.PARTIALLY_FAILED], finished_at__gte=now - RECENT
    )
    return {
        "failed_operations": progress.attach_all(
            failed.select_related("requested_by").order_by("-finished_at")[:SHOWN]
        ),
        "failed_count": failed.count(),
    }


def workers() -> dict:
    """Workers alive and queue depth, from rq. Jobs queued with no worker alive means nothing
    progresses: the page says so in red. Redis down must not take the dashboard with it."""
    from rq import Worker

    try:
        q = queue()
        found = Worker.all(connection=q.connection)
        queued = q.count + queue(URGENT).count
        scheduled = q.scheduled_job_registry.count
        now = timezone.now()
        rows = []
        for worker in sorted(found, key=lambda w: w.name):
            age = heartbeat_age(worker, now)
            state = worker.get_state()
            rows.append(
                {
                    "name": worker.name,
                    "state": state,
                    "heartbeat_age": age,
                    "answering": worker_answering(worker, state, age),
                }
            )
        alive = sum(1 for row in rows if row["answering"])
        return {
            "ok": True,
            "count": len(found),
            "alive": alive,
            "rows": rows[:SHOWN],
            "queued": queued,
            "scheduled": scheduled,
            "stalled": queued > 0 and alive == 0,
        }
    except Exception as exc:
        log.warning("cannot read workers from Redis: %s", exc)
        return {"ok": False, "error": str(exc), "count": 0, "alive": 0, "queued": 0}
