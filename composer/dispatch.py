"""Handing desktops to workers under the concurrency limits.

The limits (DESIGN.md) hold globally, whatever number of workers runs: the desktops in flight
are counted in the database under a lock on the hypervisor endpoint's row, so two workers
dispatching at once are serialized. Each desktop job dispatches the next desktop when it
ends, which keeps the pipeline full instead of waiting for a whole batch.

The limits, per hypervisor endpoint and per pool:
- provisioning: endpoint.max_provisioning and pool.max_concurrent_provisioning;
- maintenance: endpoint.max_maintenance and pool.max_concurrent_maintenance, both halved for
  an operation that forces logoffs;
- a pool's min_ready_desktops: a ready desktop is taken into maintenance only while more than
  that many of the pool's desktops stay ready.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from composer.models import Operation, OperationDesktop
from composer.queue import enqueue_on_commit
from pools.models import Desktop, HypervisorEndpoint
from pools.states import READY

Status = Operation.Status
TaskStatus = OperationDesktop.Status

PROVISIONING_KINDS = (Operation.Kind.PROVISION,)
# Operations that never take a desktop out of service, so min_ready does not apply.
NON_DISRUPTIVE = (Operation.Kind.PROVISION, Operation.Kind.LOGOFF)


def limit_class(kind: str) -> str:
    return "provisioning" if kind in PROVISIONING_KINDS else "maintenance"


def limits(operation: Operation, endpoint: HypervisorEndpoint) -> tuple[int, int]:
    """(endpoint limit, pool limit) that apply to this operation's desktops."""
    pool = operation.pool
    if limit_class(operation.kind) == "provisioning":
        return endpoint.max_provisioning, pool.max_concurrent_provisioning
    endpoint_limit, pool_limit = endpoint.max_maintenance, pool.max_concurrent_maintenance
    if operation.forces_logoff:
        endpoint_limit, pool_limit = max(1, endpoint_limit // 2), max(1, pool_limit // 2)
    return endpoint_limit, pool_limit


def dispatch(endpoint_id: int) -> int:
    """Dispatch waiting desktops of running operations on this endpoint, oldest operation
    first, while the limits allow. Returns how many were dispatched."""
    from composer.jobs import run_desktop

    now = timezone.now()
    dispatched = 0
    with transaction.atomic():
        endpoint = HypervisorEndpoint.objects.select_for_update().get(pk=endpoint_id)
        in_flight = OperationDesktop.objects.filter(
            operation__pool__endpoint=endpoint, status__in=OperationDesktop.IN_FLIGHT
        )
        busy = {
            "provisioning": in_flight.filter(operation__kind__in=PROVISIONING_KINDS).count(),
            "maintenance": in_flight.exclude(operation__kind__in=PROVISIONING_KINDS).count(),
        }
        ready_to_run = Q(status=TaskStatus.PENDING) | Q(
            status=TaskStatus.WAITING, retry_at__lte=now
        )
        operations = (
            Operation.objects.filter(
                pool__endpoint=endpoint, status=Status.RUNNING, prepared_at__isnull=False
            )
            .filter(tasks__in=OperationDesktop.objects.filter(ready_to_run))
            .select_related("pool")
            .distinct()
            .order_by("started_at", "id")
        )
        pool_busy: dict[int, int] = {}
        for operation in operations:
            cls = limit_class(operation.kind)
            pool = operation.pool
            if pool.pk not in pool_busy:
                pool_busy[pool.pk] = in_flight.filter(operation__pool=pool).count()
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
                task.save(update_fields=["status", "dispatched_at", "attempts"])
                enqueue_on_commit(run_desktop, task.job_id, task.pk, task.attempts)
                taken += 1
            busy[cls] += taken
            pool_busy[pool.pk] += taken
            dispatched += taken
    return dispatched


# How many more candidates to look at beyond the free slots, so desktops in Error (which
# min_ready does not hold back) are not stuck behind ready ones that must wait.
_READY_LOOKAHEAD = 50


def _ready_room(operation: Operation) -> int | None:
    """How many more ready desktops this operation may take out of service, or None if
    min_ready does not apply."""
    minimum = operation.pool.min_ready_desktops
    if not minimum or operation.kind in NON_DISRUPTIVE:
        return None
    # A dispatched desktop is still ready until its worker starts on it: do not count it.
    ready = (
        Desktop.objects.filter(pool=operation.pool, state__in=READY)
        .exclude(tasks__status__in=OperationDesktop.IN_FLIGHT)
        .count()
    )
    return ready - minimum
