from __future__ import annotations

import logging

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import render

from composer import progress
from composer.models import Operation
from composer.queue import queue
from pools.models import Datastore, Pool
from pools.states import DesktopState
from portal.models import AuditEvent
from portal.permissions import require

log = logging.getLogger(__name__)


def dashboard(request):
    """Everyone signed in lands here; each section shows only what the user may see."""
    context = {}
    user = request.user
    if user.has_perm("pools.view_pool"):
        context["pools"] = Pool.objects.annotate(
            desktops_total=Count("desktops"),
            desktops_ready=Count(
                "desktops",
                filter=Q(desktops__state__in=[DesktopState.AVAILABLE, DesktopState.PROVISIONED]),
            ),
            desktops_busy=Count(
                "desktops",
                filter=Q(
                    desktops__state__in=[
                        DesktopState.PROVISIONING,
                        DesktopState.CUSTOMIZING,
                        DesktopState.MAINTENANCE,
                        DesktopState.DELETING,
                    ]
                ),
            ),
            desktops_error=Count("desktops", filter=Q(desktops__state=DesktopState.ERROR)),
        ).order_by("-desktops_error", "name")
    if user.has_perm("pools.view_datastore"):
        context["datastores"] = Datastore.objects.order_by("name")
    if user.has_perm("composer.view_operation"):
        context["active_operations"] = [
            progress.attach(op)
            for op in Operation.objects.filter(status__in=Operation.ACTIVE)
            .select_related("requested_by")
            .order_by("requested_at")[:20]
        ]
        context["workers"] = _workers()
    return render(request, "portal/dashboard.html", context)


def _workers() -> dict:
    """Workers alive and queue depth, from rq: a stalled worker shows here."""
    from rq import Worker

    try:
        q = queue()
        workers = Worker.all(connection=q.connection)
        return {"count": len(workers), "queued": q.count, "ok": True}
    except Exception as exc:  # Redis down must not take the dashboard with it
        log.warning("cannot read workers from Redis: %s", exc)
        return {"count": 0, "queued": 0, "ok": False, "error": str(exc)}


@require("portal.view_audit", action="view_audit")
def audit_log(request):
    events = AuditEvent.objects.select_related("operation").order_by("-at", "-id")
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "portal/audit_log.html", {"page": page})
