from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from composer import agent_sessions, dispatch, kinds, progress, services
from composer.drivers.base import DriverError
from composer.models import DesktopTask, Operation
from pools.models import WARN_PERCENT, PoolDatastore
from portal import live
from portal.permissions import require

Status = Operation.Status
TaskStatus = DesktopTask.Status

# Which control applies in which status (the services refuse the others anyway).
CONTROLS = {
    "cancel": (Status.SCHEDULED, Status.QUEUED, Status.RUNNING, Status.PAUSED),
    "pause": (Status.RUNNING,),
    "resume": (Status.PAUSED,),
}


@require("composer.view_operation", action="view_operations")
def operation_list(request):
    """Operations, newest first, filtered by status, kind, pool and who asked."""
    operations = Operation.objects.select_related("requested_by").order_by("-requested_at", "-id")
    get = request.GET
    chosen = {
        "status": get.get("status", "") if get.get("status") in Status.values else "",
        "kind": get.get("kind", "") if get.get("kind") in dict(kinds.choices()) else "",
        "pool": get.get("pool", "")[:64],
        "by": get.get("by", "")[:150],
    }
    if chosen["status"]:
        operations = operations.filter(status=chosen["status"])
    if chosen["kind"]:
        operations = operations.filter(kind=chosen["kind"])
    if chosen["pool"]:
        # By name, so operations of a deleted pool can still be found.
        operations = operations.filter(pool_name=chosen["pool"])
    if chosen["by"]:
        operations = operations.filter(requested_by__username=chosen["by"])
    page = Paginator(operations, 50).get_page(get.get("page"))
    page.object_list = progress.attach_all(page.object_list)
    User = get_user_model()
    return render(
        request,
        "composer/operation_list.html",
        {
            "page": page,
            "status": chosen["status"],
            "chosen": chosen,
            "filtered": any(chosen.values()),
            "statuses": Status.choices,
            "kinds": kinds.choices(),
            "pool_names": Operation.objects.values_list("pool_name", flat=True)
            .distinct()
            .order_by("pool_name"),
            "requesters": User.objects.filter(operations__isnull=False)
            .values_list("username", flat=True)
            .distinct()
            .order_by("username"),
        },
    )


@require("composer.view_operation", action="view_operation")
def operation_detail(request, pk: int):
    current = live.operation_version(pk, request.user)
    if request.htmx and current and (answer := live.unchanged(request, current)):
        return answer  # nothing changed since the last poll (portal/live.py)
    operation = get_object_or_404(
        Operation.objects.select_related("requested_by", "pool__endpoint"), pk=pk
    )
    progress.attach(operation)
    end = operation.finished_at or timezone.now()
    running = operation.status == Status.RUNNING
    tasks = list(operation.tasks.select_related("desktop").order_by("desktop_name"))
    for task in tasks:
        task.operation = operation  # loaded once, for the waiting reasons
    reasons = dispatch.waiting_reasons(tasks) if operation.is_active else {}
    for task in tasks:
        # Pending, handed out or paused: why it waits ("waiting for a free slot: 8 of 8").
        task.waiting_for = "" if task.status == TaskStatus.WAITING else reasons.get(task.pk, "")
    context = {
        "operation": operation,
        "tasks": tasks,
        "carry_on": _carry_on(operation, tasks),
        "elapsed": (end - operation.started_at) if operation.started_at else None,
        "estimating": running,
        "remaining_time": progress.remaining(operation, timezone.now()) if running else None,
        "controls": [name for name, statuses in CONTROLS.items() if operation.status in statuses],
        "kind_options": operation.spec.describe(operation.options or {}),
        "planned": operation.spec.planned and bool(operation.plan),
        "live": operation.is_active,
        "live_version": current,
        "poll_seconds": settings.POLL_SECONDS,
    }
    if request.htmx:
        return live.compressed(
            request, render(request, "composer/operation_detail.html#live", context)
        )
    return render(request, "composer/operation_detail.html", context)


def _carry_on(operation: Operation, tasks) -> dict | None:
    """For an ended operation that halted or failed desktops that still exist: the link
    that runs the same kind again on just those, so an operator can carry on."""
    if operation.is_active or operation.pool is None or not operation.spec.on_pool_page:
        return None
    left = [
        t.desktop_id
        for t in tasks
        if t.status in (TaskStatus.HALTED, TaskStatus.FAILED) and t.desktop_id is not None
    ]
    if not left:
        return None
    query = urlencode([("desktop", pk) for pk in left])
    url = reverse("pools:operate", args=[operation.pool_id, operation.kind])
    return {"count": len(left), "url": f"{url}?{query}"}


# -- plans ------------------------------------------------------------------------------------


@require("composer.view_operation", action="view_plan")
def plan_detail(request, pk: int):
    """The preview of a recompose or rebalance, with Approve and Discard while it is a draft."""
    operation = get_object_or_404(
        Operation.objects.select_related("requested_by", "pool__endpoint"), pk=pk
    )
    if not operation.spec.planned:
        return redirect(operation)
    plan = operation.plan or {}
    return render(
        request,
        "composer/plan_detail.html",
        {
            "operation": operation,
            "plan": plan,
            # The kind's own part of the page, once it has a plan to show.
            "plan_template": operation.spec.plan_template if plan.get("kind") else "",
            "usage": _usage_rows(operation, plan),
            "sessions": plan.get("sessions", []),
            "sessions_known": operation.pool is None
            or agent_sessions.sessions_known(operation.pool.endpoint),
            "skipped": operation.tasks.filter(status=TaskStatus.SKIPPED).order_by("desktop_name"),
            "unplaced": sorted((plan.get("unplaced") or {}).items()),
            "not_moved": sorted((plan.get("not_moved") or {}).items()),
            "is_draft": operation.status == Status.DRAFT,
        },
    )


def _percent(part, whole) -> float | None:
    return 100.0 * part / whole if whole else None


def _usage_rows(operation: Operation, plan: dict) -> list[dict]:
    """Each datastore's real and over-commit use before and after, with percentages."""
    factors = {}
    if operation.pool_id:
        factors = dict(
            PoolDatastore.objects.filter(pool_id=operation.pool_id).values_list(
                "datastore__name", "overcommit"
            )
        )
    rows = []
    for name, use in sorted((plan.get("usage") or {}).items()):
        capacity = use.get("capacity_mb") or 0
        limit = use.get("overcommit_limit_mb")
        if limit is None and factors.get(name):
            # A plan that leaves the limit out (recompose's): the pool's level gives it.
            limit = capacity * factors[name]
        row = {"name": name, "capacity_mb": capacity, "limit_mb": limit}
        for when in ("before", "after"):
            real = use.get(f"real_{when}_mb") or 0
            committed = use.get(f"committed_{when}_mb") or 0
            real_percent = _percent(real, capacity)
            row[when] = {
                "real_mb": real,
                "real_percent": real_percent,
                "warn": real_percent is not None and real_percent >= WARN_PERCENT,
                "committed_mb": committed,
                "committed_percent": _percent(committed, limit),
            }
        row["sides"] = [row["before"], row["after"]]
        rows.append(row)
    return rows


@require_POST
@require("pools.run_maintenance", action="approve_plan")
def plan_approve(request, pk: int):
    operation = get_object_or_404(Operation, pk=pk)
    try:
        operation = services.approve(request.user, operation, request=request)
    except services.OperationRefused as exc:
        messages.error(request, str(exc))
        return redirect("composer:plan", pk=pk)
    except DriverError as exc:
        messages.error(request, f"The hypervisor did not answer: {exc}")
        return redirect("composer:plan", pk=pk)
    status = operation.get_status_display().lower()
    messages.success(request, f"Plan approved: {operation} is {status}.")
    return redirect(operation)


@require_POST
@require("pools.run_maintenance", action="discard_plan")
def plan_discard(request, pk: int):
    operation = get_object_or_404(Operation, pk=pk)
    try:
        services.discard(request.user, operation, request=request)
    except services.OperationRefused as exc:
        messages.error(request, str(exc))
        return redirect("composer:plan", pk=pk)
    messages.success(request, f"Plan of {operation} discarded; nothing was changed.")
    if operation.pool_id:
        return redirect(operation.pool)
    return redirect("composer:operations")


# -- controlling an operation -----------------------------------------------------------------


def _control(request, pk: int, action: str):
    run = {"cancel": services.cancel, "pause": services.pause, "resume": services.resume}[action]
    operation = get_object_or_404(Operation, pk=pk)
    try:
        operation = run(request.user, operation, request=request)
    except services.OperationRefused as exc:
        messages.error(request, str(exc))
    else:
        operation.refresh_from_db()  # a cancel with nothing in flight ends at once
        messages.success(request, f"{operation}: {operation.get_status_display().lower()}.")
    return redirect("composer:operation", pk=pk)


def _control_view(action: str):
    @require_POST
    @require("pools.run_maintenance", action=f"{action}_operation")
    def view(request, pk: int):
        return _control(request, pk, action)

    view.__name__ = f"operation_{action}"
    return view


@require("pools.run_maintenance", action="cancel_operation")
def operation_cancel(request, pk: int):
    """Cancelling cannot be undone, so it asks first. GET (or a POST without the answer):
    what cancelling will do, to confirm. POST confirmed=yes: cancel."""
    if request.method == "POST" and request.POST.get("confirmed") == "yes":
        return _control(request, pk, "cancel")
    operation = get_object_or_404(Operation.objects.select_related("pool"), pk=pk)
    if operation.status not in CONTROLS["cancel"]:
        messages.error(request, f"{operation} is {operation.get_status_display().lower()}.")
        return redirect("composer:operation", pk=pk)
    progress.attach(operation)
    return render(request, "composer/operation_cancel.html", {"operation": operation})


operation_pause = _control_view("pause")
operation_resume = _control_view("resume")
