from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render

from composer import naming, progress
from composer.capacity import DoesNotFit
from composer.models import Operation, OperationDesktop
from composer.services import create_pool
from pools.forms import PoolForm
from pools.models import Datastore, Desktop, Pool
from pools.states import DesktopState
from portal.permissions import require

DESKTOPS_PER_PAGE = 100


@require("pools.view_pool", action="view_pools")
def pool_list(request):
    pools = (
        Pool.objects.select_related("image_version__image")
        .annotate(
            desktops_total=Count("desktops"),
            desktops_ready=Count(
                "desktops",
                filter=Q(desktops__state__in=[DesktopState.AVAILABLE, DesktopState.PROVISIONED]),
            ),
            desktops_error=Count("desktops", filter=Q(desktops__state=DesktopState.ERROR)),
        )
        .order_by("name")
    )
    return render(request, "pools/pool_list.html", {"pools": pools})


@require("pools.add_pool", action="create_pool")
def pool_create(request):
    form = PoolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            operation = create_pool(request.user, form.spec, request=request)
        except DoesNotFit as exc:  # the datastores filled up since the form was checked
            form.add_error("datastores", str(exc))
        except naming.NamingError as exc:
            form.add_error("naming_pattern", str(exc))
        else:
            messages.success(
                request,
                f"Pool {operation.pool_name} created; provisioning {form.spec.size} desktops.",
            )
            return redirect("pools:detail", pk=operation.pool_id)
    return render(request, "pools/pool_form.html", {"form": form})


@require("pools.view_pool", action="view_pool")
def pool_detail(request, pk: int):
    pool = get_object_or_404(Pool.objects.select_related("image_version__image", "endpoint"), pk=pk)
    context = _desktop_table(request, pool)
    context["pool_datastores"] = pool.pool_datastores.select_related("datastore").order_by(
        "datastore__name"
    )
    if request.htmx:
        return render(request, "pools/pool_detail.html#live", context)
    return render(request, "pools/pool_detail.html", context)


def _desktop_table(request, pool: Pool) -> dict:
    desktops = Desktop.objects.filter(pool=pool).select_related("datastore", "image_version")
    state = request.GET.get("state", "")
    if state in DesktopState.values:
        desktops = desktops.filter(state=state)
    else:
        state = ""
    search = request.GET.get("q", "").strip()[:100]
    if search:
        desktops = desktops.filter(Q(name__icontains=search) | Q(assigned_user__icontains=search))
    page = Paginator(desktops.order_by("name"), DESKTOPS_PER_PAGE).get_page(request.GET.get("page"))

    active = list(
        Operation.objects.filter(pool=pool, status__in=Operation.ACTIVE).order_by("requested_at")
    )
    # The step each desktop on this page is in, from the operations running on the pool.
    steps = dict(
        OperationDesktop.objects.filter(
            operation__in=active,
            desktop__in=[d.pk for d in page],
            status__in=OperationDesktop.IN_FLIGHT,
        ).values_list("desktop_id", "step")
    )
    for desktop in page:
        desktop.step = steps.get(desktop.pk, "")
    counts = dict(
        Desktop.objects.filter(pool=pool).values_list("state").annotate(n=Count("id")).order_by()
    )
    return {
        "pool": pool,
        "page": page,
        "state": state,
        "q": search,
        "states": [(s, label, counts.get(s, 0)) for s, label in DesktopState.choices],
        "active_operations": [progress.attach(op) for op in active],
        "recent_operations": Operation.objects.filter(pool=pool).order_by("-requested_at")[:5],
        "live": bool(active),
        "poll_seconds": settings.POLL_SECONDS,
    }


@require("pools.view_desktop", action="view_desktop")
def desktop_detail(request, pk: int):
    desktop = get_object_or_404(
        Desktop.objects.select_related("pool", "datastore", "image_version__image", "replica"),
        pk=pk,
    )
    tasks = (
        OperationDesktop.objects.filter(desktop=desktop)
        .select_related("operation__requested_by")
        .order_by("-operation__requested_at")[:20]
    )
    return render(
        request,
        "pools/desktop_detail.html",
        {"desktop": desktop, "tasks": tasks, "disks": desktop.disks.select_related("datastore")},
    )


@require("pools.view_datastore", action="view_datastores")
def datastore_list(request):
    datastores = Datastore.objects.select_related("endpoint").annotate(
        desktops_count=Count("desktops", distinct=True)
    )
    return render(request, "pools/datastore_list.html", {"datastores": datastores})
