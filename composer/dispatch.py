"""Handing desktops to workers under the concurrency limits.

The limits (DESIGN.md) hold globally, whatever number of workers runs: the desktops in flight
are counted in the database under a lock on the hypervisor endpoint's row, so two workers
dispatching at once are serialized. Each desktop job dispatches the next desktop when it
ends, which keeps the pipeline full instead of waiting for a whole batch; it may keep one of
the desktops it hands out for itself (dispatch_and_claim) and run it in the same job.

The limits, per hypervisor endpoint and per pool:
- provisioning: endpoint.max_provisioning and pool.max_concurrent_provisioning;
- maintenance: endpoint.max_maintenance and pool.max_concurrent_maintenance, both halved for
  a bulk operation that forces logoffs;
- urgent operations (helpdesk-sized, Operation.urgent) first: the next free slot is theirs;
- a pool's min_ready_desktops: a ready desktop is taken into maintenance only while more than
  that many of the pool's desktops stay ready.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from composer import kinds
from composer.models import DesktopTask, Operation
from composer.queue import RUN_DESKTOP, enqueue_on_commit
from pools.models import Desktop, HypervisorEndpoint
from pools.states import READY

Status = Operation.Status
TaskStatus = DesktopTask.Status


def limit_class(kind: str) -> str:
    """The limit its desktops count against: the kind's (composer/kinds/)."""
    return kinds.get(kind).limit_class


def limits(operation: Operation, endpoint: HypervisorEndpoint) -> tuple[int, int]:
    """(endpoint limit, pool limit) that apply to this operation's desktops."""
    pool = operation.pool
    if operation.spec.limit_class == kinds.PROVISIONING:
        return endpoint.max_provisioning, pool.max_concurrent_provisioning
    endpoint_limit, pool_limit = endpoint.max_maintenance, pool.max_concurrent_maintenance
    if operation.forces_logoff and not operation.urgent:
        # Halved so that forced logoffs reach users a few at a time; one urgent desktop is
        # one user, who asked for it (else it could wait behind a whole bulk refresh).
        endpoint_limit, pool_limit = max(1, endpoint_limit // 2), max(1, pool_limit // 2)
    return endpoint_limit, pool_limit


def dispatch(endpoint_id: int, before: Callable[[], object] | None = None) -> int:
    """Dispatch waiting desktops of running operations on this endpoint, oldest operation
    first, while the limits allow. Returns how many were dispatched.

    `before`, if given, runs first in the same transaction, under the endpoint's lock: a
    desktop job records there how its desktop ended, so the slot it frees is counted free
    and both are one commit."""
    return _dispatch(endpoint_id, before, claim=None)[0]


def dispatch_and_claim(
    endpoint_id: int, runner: str, rq_job_id: str, before: Callable[[], object] | None = None
) -> DesktopTask | None:
    """Dispatch as dispatch() does, but keep the first desktop handed out for the caller,
    a desktop job that has just freed its slot: that task is marked running by `runner` in
    the rq job `rq_job_id` (as run_desktop's claim would), with its `operation` (and pool)
    loaded, instead of a job being enqueued for it. The caller runs its steps at once
    (jobs.run_desktop), which saves a job's queueing, fork and bookkeeping. Its attempt is
    counted as any other's, so a runner that dies is found out by the reconciler (runner's
    process gone, or its rq job) and the desktop handed out again."""
    return _dispatch(endpoint_id, before, claim=(runner, rq_job_id))[1]


def _dispatch(
    endpoint_id: int, before, claim: tuple[str, str] | None
) -> tuple[int, DesktopTask | None]:
    dispatched = 0
    claimed = None
    with transaction.atomic():
        endpoint = HypervisorEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if before is not None:
            before()
        now = timezone.now()
        # Desktops in flight on the endpoint, by kind of operation and by pool: one query.
        busy, pool_busy = _slots_in_use(endpoint.pk)
        ready_to_run = Q(status=TaskStatus.PENDING) | Q(
            status=TaskStatus.WAITING, retry_at__lte=now
        )
        operations = (
            Operation.objects.filter(
                pool__endpoint=endpoint, status=Status.RUNNING, prepared_at__isnull=False
            )
            .filter(tasks__in=DesktopTask.objects.filter(ready_to_run))
            .select_related("pool")
            .distinct()
            # Urgent (helpdesk-sized) operations take the next free slot before bulk work.
            .order_by("-urgent", "started_at", "id")
        )
        for operation in operations:
            cls = limit_class(operation.kind)
            pool = operation.pool
            endpoint_limit, pool_limit = limits(operation, endpoint)
            room = min(endpoint_limit - busy[cls], pool_limit - pool_busy[pool.pk])
            if room <= 0:
                continue
            ready_room = _ready_room(operation)
            candidates = operation.tasks.filter(ready_to_run).select_related("desktop")
            taken = 0
            for task in candidates.order_by("id")[: room + _READY_LOOKAHEAD]:
                if taken == room:
                    break
                takes_ready = task.desktop is not None and task.desktop.state in READY
                if takes_ready and ready_room is not None:
                    if ready_room <= 0:
                        continue
                    ready_room -= 1
                task.status, task.dispatched_at = TaskStatus.DISPATCHED, now
                task.attempts += 1
                task.rq_job_id = ""  # a job of an earlier attempt runs it no more
                fields = ["status", "dispatched_at", "attempts", "rq_job_id"]
                if claim is not None and claimed is None:
                    task.status, task.started_at = TaskStatus.RUNNING, now
                    task.runner, task.rq_job_id = claim
                    task.operation = operation
                    task.save(update_fields=[*fields, "started_at", "runner"])
                    claimed = task
                else:
                    task.save(update_fields=fields)
                    enqueue_on_commit(
                        RUN_DESKTOP,
                        task.job_id,
                        task.pk,
                        task.attempts,
                        queue_name=operation.queue_name,
                    )
                taken += 1
            busy[cls] += taken
            pool_busy[pool.pk] += taken
            dispatched += taken
    return dispatched, claimed


# How many more candidates to look at beyond the free slots, so desktops in Error (which
# min_ready does not hold back) are not stuck behind ready ones that must wait.
_READY_LOOKAHEAD = 50


def _ready_room(operation: Operation) -> int | None:
    """How many more ready desktops this operation may take out of service, or None if
    min_ready does not apply."""
    minimum = operation.pool.min_ready_desktops
    if not minimum or not operation.spec.disruptive:
        return None
    # A dispatched desktop is still ready until its worker starts on it: do not count it.
    ready = (
        Desktop.objects.filter(pool=operation.pool, state__in=READY)
        .exclude(tasks__status__in=DesktopTask.IN_FLIGHT)
        .count()
    )
    return ready - minimum


def waiting_reasons(tasks: list[DesktopTask]) -> dict[int, str]:
    """Task id -> why that desktop is not being worked on yet, for the tasks that wait
    (pending, dispatched, or in a paused operation), each task with its `operation` and
    pool loaded. The slots in use are counted as dispatch() counts them: one query per
    endpoint of the waiting tasks."""
    reasons: dict[int, str] = {}
    slots: dict[int, tuple[dict[str, int], dict[int, int]]] = {}
    for task in tasks:
        operation = task.operation
        if task.status in DesktopTask.FINISHED or task.status == TaskStatus.RUNNING:
            continue
        if operation.status == Status.PAUSED:
            reasons[task.pk] = "waiting (paused)"
        elif task.status == TaskStatus.DISPATCHED:
            reasons[task.pk] = "waiting for a worker"
        elif task.status == TaskStatus.WAITING:
            reasons[task.pk] = task.error or "waiting"
        elif operation.status == Status.SCHEDULED:
            reasons[task.pk] = "waiting for the scheduled start"
        elif operation.status != Status.RUNNING or operation.prepared_at is None:
            reasons[task.pk] = "waiting for the operation to start"
        elif operation.pool is not None:
            endpoint_id = operation.pool.endpoint_id
            if endpoint_id not in slots:
                slots[endpoint_id] = _slots_in_use(endpoint_id)
            busy, pool_busy = slots[endpoint_id]
            endpoint = operation.pool.endpoint
            endpoint_limit, pool_limit = limits(operation, endpoint)
            in_use = busy[limit_class(operation.kind)]
            if in_use >= endpoint_limit:
                reasons[task.pk] = (
                    f"waiting for a free slot: {in_use} of {endpoint_limit} in use on "
                    f"{endpoint.name}"
                )
            elif pool_busy[operation.pool_id] >= pool_limit:
                reasons[task.pk] = (
                    f"waiting for a free slot: {pool_busy[operation.pool_id]} of {pool_limit} "
                    f"in use in pool {operation.pool.name}"
                )
            else:
                reasons[task.pk] = "waiting for its turn"
    return reasons


def _slots_in_use(endpoint_id: int) -> tuple[dict[str, int], dict[int, int]]:
    """Desktops in flight on the endpoint: by limit class, and by pool."""
    busy = {kinds.PROVISIONING: 0, kinds.MAINTENANCE: 0}
    pool_busy: dict[int, int] = defaultdict(int)
    for pool_id, kind, count in (
        DesktopTask.objects.filter(
            operation__pool__endpoint_id=endpoint_id, status__in=DesktopTask.IN_FLIGHT
        )
        .values_list("operation__pool_id", "operation__kind")
        .annotate(count=Count("*"))
        .order_by()
    ):
        busy[limit_class(kind)] += count
        pool_busy[pool_id] += count
    return busy, pool_busy
