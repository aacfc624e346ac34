from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from composer import progress
from composer.models import Operation
from portal.permissions import require


@require("composer.view_operation", action="view_operations")
def operation_list(request):
    operations = Operation.objects.select_related("requested_by").order_by("-requested_at", "-id")
    status = request.GET.get("status", "")
    if status in Operation.Status.values:
        operations = operations.filter(status=status)
    page = Paginator(operations, 50).get_page(request.GET.get("page"))
    for operation in page:
        progress.attach(operation)
    return render(
        request,
        "composer/operation_list.html",
        {"page": page, "status": status, "statuses": Operation.Status.choices},
    )


@require("composer.view_operation", action="view_operation")
def operation_detail(request, pk: int):
    operation = get_object_or_404(Operation.objects.select_related("requested_by", "pool"), pk=pk)
    progress.attach(operation)
    end = operation.finished_at or timezone.now()
    context = {
        "operation": operation,
        "tasks": operation.tasks.select_related("desktop").order_by("desktop_name"),
        "elapsed": (end - operation.started_at) if operation.started_at else None,
        "live": operation.is_active,
        "poll_seconds": settings.POLL_SECONDS,
    }
    if request.htmx:
        return render(request, "composer/operation_detail.html#live", context)
    return render(request, "composer/operation_detail.html", context)
