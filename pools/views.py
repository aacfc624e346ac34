from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from composer import naming, progress, services
from composer.capacity import DoesNotFit
from composer.drivers.base import DriverError
from composer.forms import NAMES_SHOWN, OPERATE_KINDS, OperationForm, resolve_desktops
from composer.models import Operation, OperationDesktop
from composer.services import create_pool, set_pool_datastores
from pools.forms import PoolDatastoresForm, PoolForm
from pools.models import Datastore, Desktop, Pool
from pools.states import DesktopState
from portal.permissions import deny, require

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
        "operate_kinds": [(kind, Operation.Kind(kind).label) for kind in OPERATE_KINDS],
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


def _may_operate(user, kind: str, raw_ids: list[str]) -> bool:
    """The rule composer.services applies, checked before the form is even shown: helpdesk
    may refresh, power or log off one desktop; anything wider needs run_maintenance.

    It counts the ids as given (the form reports ids that do not resolve); the service
    checks again against the real desktops."""
    needed = services.required_permission(kind, list(dict.fromkeys(raw_ids)), not raw_ids)
    return user.has_perm(needed) or user.has_perm("pools.run_maintenance")


def _selection(pool: Pool, raw_ids: list[str], marked: bool):
    """(desktops or None for the whole pool, error message) for the scope shown on the form."""
    if not raw_ids:
        return None, ("No desktops selected: tick them on the pool page first." if marked else "")
    try:
        return resolve_desktops(pool, raw_ids), ""
    except ValidationError as exc:
        return [], exc.messages[0]


def pool_operate(request, pk: int, kind: str):
    """The form of one maintenance operation on a pool or on chosen desktops of it.

    Refresh, delete, power and log off start (or are scheduled) on submit; recompose and
    rebalance are planned first and shown for approval.
    """
    if kind not in OPERATE_KINDS:
        raise Http404("No such operation.")
    pool = get_object_or_404(Pool.objects.select_related("endpoint", "image_version__image"), pk=pk)
    params = request.POST if request.method == "POST" else request.GET
    raw_ids = [raw for raw in params.getlist("desktop") if raw != ""]
    if not _may_operate(request.user, kind, raw_ids):
        raise deny(request, kind, target=pool)
    marked = params.get("selection") in ("1", "True", "on")

    if request.method == "POST":
        form = OperationForm(request.POST, pool=pool, kind=kind)
        if form.is_valid():
            try:
                return _submit(request, pool, kind, form)
            except services.OperationRefused as exc:
                form.add_error(None, str(exc))
            except DriverError as exc:
                form.add_error(None, f"The hypervisor did not answer: {exc}")
    else:
        form = OperationForm(
            pool=pool, kind=kind, initial={"desktop": raw_ids, "selection": marked}
        )
    chosen, selection_error = _selection(pool, raw_ids, marked)
    if request.method == "POST" and "desktop" in form.errors:
        selection_error = ""  # the form shows it beside the scope
    return render(
        request,
        "composer/operation_form.html",
        {
            "pool": pool,
            "kind": kind,
            "kind_label": Operation.Kind(kind).label,
            "planned": kind in services.PLANNED_KINDS,
            "form": form,
            "chosen": chosen[:NAMES_SHOWN] if chosen else chosen,
            "chosen_count": len(chosen) if chosen is not None else None,
            "more": max(0, len(chosen) - NAMES_SHOWN) if chosen else 0,
            "pool_size": pool.desktops.count(),
            "selection_error": selection_error,
            "back": _back_url(request, pool, chosen),
        },
    )


def _submit(request, pool: Pool, kind: str, form: OperationForm):
    args = (request.user, pool, kind, form.desktops, form.options(), form.extra())
    if kind in services.PLANNED_KINDS:
        operation = services.plan_operation(*args, request=request)
        return redirect("composer:plan", pk=operation.pk)
    operation = services.start_operation(*args, request=request)
    when = (
        f"scheduled for {operation.scheduled_for:%Y-%m-%d %H:%M}"
        if operation.scheduled_for
        else "queued"
    )
    messages.success(request, f"{operation} {when}.")
    if request.user.has_perm("composer.view_operation"):
        return redirect(operation)
    # Helpdesk cannot read operations; the desktop page shows the task's progress.
    desktops = form.desktops or []
    return redirect(desktops[0] if len(desktops) == 1 else "dashboard")


def _back_url(request, pool: Pool, chosen) -> str:
    if request.user.has_perm("pools.view_pool"):
        return pool.get_absolute_url()
    if chosen and len(chosen) == 1:
        return chosen[0].get_absolute_url()
    return "/"


@require("pools.change_pool", action="pool_datastores")
def pool_datastores(request, pk: int):
    """Select or deselect the pool's datastores and their over-commit. Deselecting one, then
    rebalancing, is how a datastore is vacated."""
    pool = get_object_or_404(Pool.objects.select_related("endpoint"), pk=pk)
    form = PoolDatastoresForm(request.POST or None, pool=pool)
    if request.method == "POST" and form.is_valid():
        changes = form.changes()
        set_pool_datastores(request.user, pool, changes, request=request)
        deselected = [ds.name for ds, selected, _ in changes if not selected]
        note = (
            f" Rebalance the pool to move its desktops off {', '.join(deselected)}."
            if deselected
            else ""
        )
        messages.success(request, f"Datastores of {pool.name} saved.{note}")
        return redirect(pool)
    counts = dict(
        Desktop.objects.filter(pool=pool)
        .values_list("datastore_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = [(ds, link, sel, oc, counts.get(ds.pk, 0)) for ds, link, sel, oc in form.rows()]
    return render(request, "pools/pool_datastores.html", {"pool": pool, "form": form, "rows": rows})
