from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.models import AuditEvent
from composer import agent_sessions, images, kinds, naming, services
from composer.capacity import DoesNotFit
from composer.drivers.base import DriverError
from composer.models import DesktopTask
from composer.services import OperationRefused, create_pool, set_pool_datastores
from composer.services.authorization import MAINTENANCE, allowed
from pools import usage
from pools.datastore_order import DatastoreOrderedIds
from pools.models import BaseImage, Datastore, Desktop, ImageVersion, Pool
from pools.states import DesktopState
from portal import desktop_filters, live, pool_live_part
from portal.desktop_filters import FLAGS, SORT_LABELS
from portal.operation_forms import NAMES_SHOWN, OperationForm, resolve_desktops
from portal.permissions import deny, require
from portal.pool_forms import PoolDatastoresForm, PoolForm, PoolResizeForm
from portal.templatetags.portal_tags import stamp

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
    active = pool_live_part.active_operations(pool)
    version, stamps = live.pool_version(pool.pk, request.user)
    context = _desktop_table(request, pool, active, stamps)
    ids = [d.pk for d in context["page"]]
    context.update(pool_live_part.context(pool, ids, active, version))
    if request.htmx:  # a page loaded before the live part had its own address polls here
        context["changed_rows"] = list(context["page"])
        return live.compressed(request, render(request, "pools/pool_live.html", context))
    per_datastore = context["datastore_counts"]
    context["pool_datastores"] = [
        (link, per_datastore.get(link.datastore_id, 0))
        for link in pool.pool_datastores.select_related("datastore").order_by("datastore__name")
    ]
    return render(request, "pools/pool_detail.html", context)


@require("pools.view_pool", action="view_pool")
def pool_live(request, pk: int):
    """The pool page's live part (portal/pool_live_part.py): 204 when nothing changed."""
    found = live.pool_version(pk, request.user)
    if found is None:
        raise Http404("No such pool.")
    version, stamps = found
    if answer := live.unchanged(request, version):
        return answer
    # With its endpoint (one join, no query more): its driver says whether sessions are known.
    pool = get_object_or_404(Pool.objects.select_related("endpoint"), pk=pk)
    ids = pool_live_part.decode_ids(request.GET.get("rows", ""))
    since = pool_live_part.window(request.GET)
    active = pool_live_part.active_operations(pool)
    operations_changed = since is None or (stamps["operations"] or since) > since
    context = pool_live_part.context(pool, ids, active, version, operations=operations_changed)
    context["changed_rows"], context["gone_rows"] = pool_live_part.changed_rows(
        pool, ids, active, since
    )
    context["can_select"] = request.user.has_perm("pools.run_maintenance")
    return live.compressed(request, render(request, "pools/pool_live.html", context))


def _query(request, **changes) -> str:
    """The current query string with some parameters changed (None removes one)."""
    params = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params.urlencode()


def _desktop_table(request, pool: Pool, active: list, stamps: dict) -> dict:
    """The desktop table: filtered, sorted and paginated by the database with a fixed number
    of queries, whatever the size of the pool (tests/pools/test_pages_scale.py)."""
    f = desktop_filters.parse(request.GET)
    desktops = desktop_filters.apply(Desktop.objects.filter(pool=pool), f)
    # One pass over the pool's desktops counts them by state, datastore and version at once
    # (the filter menus), and answers the pager's count when only those filter.
    # Shared by every page view until one of the pool's desktops changes (portal/live.py).
    grouped = live.memo(
        ("pool_counts", pool.pk, stamps["desktops"]),
        lambda: list(
            Desktop.objects.filter(pool=pool)
            .values_list("state", "datastore_id", "image_version_id")
            .annotate(n=Count("*"))
            .order_by()
        ),
    )
    # Paginate the ids, then fetch the page's rows: the database sorts and skips narrow
    # (index-only) rows, not whole desktops, which keeps deep pages of a big pool fast.
    known = None  # desktops per datastore, when the menus' counts answer it
    if not any(f[k] for k in ("flag", "q", "user")):
        known = {}
        for state, datastore, version, n in grouped:
            if f["state"] in ("", state) and f["datastore"] in (None, datastore):
                if f["version"] in (None, version):
                    known[datastore] = known.get(datastore, 0) + n
    if f["sort"] == "datastore":  # a datastore at a time, not a sort of the whole pool
        ids = DatastoreOrderedIds(desktops, f["descending"], counts=known)
        paginator = Paginator(ids, DESKTOPS_PER_PAGE)
    else:
        paginator = Paginator(desktops.values_list("pk", flat=True), DESKTOPS_PER_PAGE)
        if known is not None:
            paginator.count = sum(known.values())
    page = paginator.get_page(request.GET.get("page"))
    ids = list(page.object_list)
    rows = Desktop.objects.select_related("datastore", "image_version").in_bulk(ids)
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    pool_live_part.attach_steps(page.object_list, active)

    counts, datastore_counts, version_counts = {}, {}, {}
    for state, datastore, version, n in grouped:
        counts[state] = counts.get(state, 0) + n
        datastore_counts[datastore] = datastore_counts.get(datastore, 0) + n
        version_counts[version] = version_counts.get(version, 0) + n
    # The filter menus list what the pool's desktops really use, with counts.
    names = Datastore.objects.in_bulk(datastore_counts)
    datastore_choices = sorted(
        ((pk, names[pk].name, n) for pk, n in datastore_counts.items() if pk in names),
        key=lambda choice: choice[1],
    )
    versions = ImageVersion.objects.select_related("image").in_bulk(version_counts)
    sort_links = []
    for key, label in SORT_LABELS.items():
        current = f["sort"] == key
        next_sort = f"-{key}" if current and not f["descending"] else key
        sort_links.append(
            {
                "key": key,
                "label": label,
                "url": "?" + _query(request, sort=next_sort, page=None),
                "current": current,
                "descending": current and f["descending"],
            }
        )
    filtered = any(f[k] for k in ("state", "flag", "q", "user", "datastore", "version"))
    return {
        "pool": pool,
        "page": page,
        "filters": f,
        "filtered": filtered,
        "filter_query": desktop_filters.query_of(f),
        "q": f["q"],
        "state": f["state"],
        "states": [(s, label, counts.get(s, 0)) for s, label in DesktopState.choices],
        "flags": FLAGS.items(),
        "total": sum(counts.values()),
        "datastore_counts": datastore_counts,
        "datastore_choices": datastore_choices,
        "version_choices": [(pk, versions.get(pk), n) for pk, n in version_counts.items()],
        "sort_links": {link["key"]: link for link in sort_links},
        "operate_kinds": kinds.on_pool_page(),
        "can_select": request.user.has_perm("pools.run_maintenance"),
    }


@require("pools.view_desktop", action="view_desktop")
def desktop_detail(request, pk: int):
    desktop = get_object_or_404(
        Desktop.objects.select_related(
            "pool__endpoint", "datastore", "image_version__image", "replica"
        ),
        pk=pk,
    )
    tasks = list(
        DesktopTask.objects.filter(desktop=desktop)
        .select_related("operation__requested_by")
        .order_by("-operation__requested_at", "-pk")[:20]
    )
    # The task of the live operation working on it (a later one may have skipped it: busy).
    current = next(
        (t for t in tasks if t.operation.is_active and t.status not in DesktopTask.FINISHED),
        None,
    )
    context = {
        "desktop": desktop,
        "session": agent_sessions.session(desktop),
        "tasks": tasks,
        "current": current,
        "live": current is not None,
        "poll_seconds": settings.POLL_SECONDS,
    }
    if request.htmx:
        return render(request, "pools/desktop_detail.html#live", context)
    context["disks"] = desktop.disks.select_related("datastore").order_by("name")
    if request.user.has_perm("audit.view_audit"):
        # Its own events, and those of every operation that included it: two queries, each
        # answered by its index, merged (an OR of the two read the whole log, newest first).
        own = AuditEvent.objects.filter(target_type="desktop", target_id=str(desktop.pk))
        of_operations = AuditEvent.objects.filter(
            operation_id__in=desktop.tasks.values("operation_id")
        )
        events = {
            e.pk: e
            for query in (own, of_operations)
            for e in query.select_related("operation").order_by("-at", "-id")[:50]
        }
        context["events"] = sorted(events.values(), key=lambda e: (e.at, e.pk), reverse=True)[:50]
    return render(request, "pools/desktop_detail.html", context)


@require("pools.view_datastore", action="view_datastores")
def datastore_list(request):
    datastores = Datastore.objects.select_related("endpoint").order_by("name")
    return render(
        request,
        "pools/datastore_list.html",
        {"rows": usage.datastore_usage(datastores)},
    )


@require("pools.view_imageversion", action="view_images")
def image_list(request):
    images = usage.lineage()
    unused = [
        row
        for _, versions in images
        for version in versions
        for row in version.replicas
        if row.safe_to_delete
    ]
    return render(request, "pools/image_list.html", {"images": images, "unused": unused})


@require_POST
@require("pools.add_imageversion", action="register_image_version")
def image_version_add(request, pk: int):
    """Register a snapshot of the image's parent VM as a new version: checked in the
    hypervisor, with its sizes read from there (composer/images.py)."""
    image = get_object_or_404(BaseImage.objects.select_related("endpoint"), pk=pk)
    try:
        version = images.register_version(
            request.user, image, request.POST.get("snapshot", ""), request=request
        )
    except images.VersionRefused as exc:
        messages.error(request, f"{image.name}: version not registered: {exc}")
    else:
        messages.success(
            request,
            f"{version}: registered (system disk {version.disk_mb} MiB, replica "
            f"{version.used_mb} MiB, as the hypervisor reports them).",
        )
    return redirect(f"{reverse('pools:images')}#image-{image.pk}")


def _may_operate(user, kind: str, raw_ids: list[str]) -> bool:
    """The rule composer.services applies, checked before the form is even shown: helpdesk
    may refresh, power or log off one desktop; anything wider needs run_maintenance.

    It counts the ids as given (the form reports ids that do not resolve); the service
    checks again against the real desktops."""
    needed = services.required_permission(kind, list(dict.fromkeys(raw_ids)), not raw_ids)
    return allowed(user, needed, MAINTENANCE)


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
    try:
        spec = kinds.get(kind)
    except kinds.UnknownKind:
        raise Http404("No such operation.") from None
    if not spec.on_pool_page:
        raise Http404("No such operation.")
    pool = get_object_or_404(Pool.objects.select_related("endpoint", "image_version__image"), pk=pk)
    params = request.POST if request.method == "POST" else request.GET
    match = params.get("match", "")[:2000]
    raw_ids = [raw for raw in params.getlist("desktop") if raw != ""]
    if match:  # "all N matching this filter": the filter chooses, not ticked boxes
        raw_ids = [str(d.pk) for d in desktop_filters.matching(pool, match)]
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
            pool=pool,
            kind=kind,
            initial={"desktop": [] if match else raw_ids, "selection": marked, "match": match},
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
            "kind_label": spec.label,
            "spec": spec,
            "title": _operation_title(kind, pool, [] if selection_error else chosen),
            # Irreversible: the button looks it (a deleted VM, a user's lost session).
            "dangerous": spec.dangerous,
            "planned": spec.planned,
            "sessions_known": agent_sessions.sessions_known(pool.endpoint),
            "form": form,
            "chosen": chosen[:NAMES_SHOWN] if chosen else chosen,
            "chosen_count": len(chosen) if chosen is not None else None,
            "more": max(0, len(chosen) - NAMES_SHOWN) if chosen else 0,
            "pool_size": pool.desktops.count(),
            "selection_error": selection_error,
            "back": _back_url(request, pool, chosen),
        },
    )


def _operation_title(kind: str, pool: Pool, chosen) -> str:
    """What the form does, naming the object: "Delete desktop SAL-04", "Refresh 3 desktops
    of pool Sales", "Delete pool Sales"."""
    label = kinds.get(kind).label
    if chosen is None:
        return f"{label} pool {pool.name}"
    if not chosen:  # a selection that could not be read: the form says why
        return f"{label} desktops of pool {pool.name}"
    if len(chosen) == 1:
        return f"{label} desktop {chosen[0].name}"
    return f"{label} {len(chosen)} desktops of pool {pool.name}"


def _submit(request, pool: Pool, kind: str, form: OperationForm):
    operation = services.request_operation(
        request.user,
        pool,
        kind,
        form.desktops,
        form.options(),
        form.extra(),
        request=request,
        submission=form.cleaned_data.get("submission") or "",
    )
    if operation.spec.planned:
        return redirect("composer:plan", pk=operation.pk)
    when = (
        f"scheduled for {stamp(operation.scheduled_for)}" if operation.scheduled_for else "queued"
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
        .annotate(n=Count("*"))
        .order_by()
    )
    rows = [(ds, link, sel, oc, counts.get(ds.pk, 0)) for ds, link, sel, oc in form.rows()]
    return render(request, "pools/pool_datastores.html", {"pool": pool, "form": form, "rows": rows})


@require("pools.change_pool", action="resize_pool")
def pool_resize(request, pk: int):
    """Grow or shrink the pool: the first submission shows what would happen (which desktops
    would be provisioned or deleted), the confirmation does it (services.resize_pool)."""
    pool = get_object_or_404(Pool.objects.select_related("endpoint", "image_version"), pk=pk)
    form = PoolResizeForm(request.POST or None, initial={"size": pool.size})
    preview = None
    if request.method == "POST" and form.is_valid():
        size = form.cleaned_data["size"]
        try:
            if form.cleaned_data["confirm"]:
                operation = services.resize_pool(request.user, pool, size, request=request)
                return _resized(request, pool, size, operation)
            preview = services.preview_resize(pool, size)
        except (DoesNotFit, naming.NamingError, OperationRefused) as exc:
            form.add_error("size", str(exc))
    current = services.pool_desktop_count(pool)
    return render(
        request,
        "pools/pool_resize.html",
        {"pool": pool, "form": form, "preview": preview, "current": current},
    )


def _resized(request, pool: Pool, size: int, operation):
    if operation is None:
        messages.info(request, f"{pool.name} already has {size} desktops: nothing to do.")
        return redirect(pool)
    count = operation.tasks.count()
    what = kinds.get(operation.kind).label.lower()  # provision, or delete
    messages.success(
        request, f"{pool.name} resized to {size}: {what} {count} desktop{'s' * (count != 1)}."
    )
    return redirect("composer:operation", pk=operation.pk)
