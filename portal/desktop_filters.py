"""The pool page's desktop filters and sorts, read from a query string and applied to a
queryset. One place, because the same filter chooses the desktops of "all N matching this
filter" on the operation form (portal/operation_forms.py)."""

from __future__ import annotations

from django.db.models import Q

from composer.stuck import stuck_q
from pools.models import MAX_ID
from pools.states import DesktopState

# Sort keys the desktop table accepts, and the columns each means. Anything else is ignored,
# so no request can order by an arbitrary field. The name breaks ties, so pages are stable.
SORTS = {
    "name": ("name",),
    "state": ("state", "name"),
    # The id after the name keeps two hypervisors' same-named datastores apart.
    "datastore": ("datastore__name", "datastore_id", "name"),
    "user": ("assigned_user", "name"),
    "changed": ("state_changed_at", "name"),
}
SORT_LABELS = {
    "name": "Name",
    "state": "State",
    "datastore": "Datastore",
    "user": "Assigned user",
    "changed": "State since",
}
FLAGS = {
    "missing": "Missing VM",
    "halted": "Task halted",
    "stuck": "Stuck",
}


def int_param(value: str) -> int | None:
    """An id from the query string, or None: not a number, or no row can have it."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def parse(get) -> dict:
    """The table's filters from a query string (a QueryDict), each checked; bad values are
    dropped."""
    state = get.get("state", "")
    flag = get.get("flag", "")
    sort = get.get("sort", "name")
    descending = sort.startswith("-")
    if sort.lstrip("-") not in SORTS:
        sort, descending = "name", False
    return {
        "state": state if state in DesktopState.values else "",
        "flag": flag if flag in FLAGS else "",
        "q": get.get("q", "").strip()[:100],
        "user": get.get("user", "").strip()[:150],
        "datastore": int_param(get.get("datastore", "")),
        "version": int_param(get.get("version", "")),
        "sort": sort.lstrip("-"),
        "descending": descending,
    }


def apply(desktops, f: dict):
    """The desktops that match the filters `f` (from parse()), in the table's order."""
    if f["state"]:
        desktops = desktops.filter(state=f["state"])
    if f["flag"] == "missing":
        desktops = desktops.filter(missing=True)
    elif f["flag"] == "halted":
        desktops = desktops.filter(task_halted=True)
    elif f["flag"] == "stuck":
        desktops = desktops.filter(stuck_q())
    if f["q"]:
        q = f["q"]
        desktops = desktops.filter(
            Q(name__icontains=q) | Q(assigned_user__icontains=q) | Q(session_user__icontains=q)
        )
    if f["user"]:
        # Exact, so the assigned_user and session_user indexes answer it; partial is `q`.
        desktops = desktops.filter(Q(assigned_user=f["user"]) | Q(session_user=f["user"]))
    if f["datastore"]:
        desktops = desktops.filter(datastore_id=f["datastore"])
    if f["version"]:
        desktops = desktops.filter(image_version_id=f["version"])
    columns = SORTS[f["sort"]]
    if f["descending"]:
        columns = tuple(f"-{c}" for c in columns)
    return desktops.order_by(*columns)


# The parameters that choose desktops (not their order or page).
FILTER_KEYS = ("q", "state", "flag", "user", "datastore", "version")


def query_of(f: dict) -> str:
    """The filters in use, as a query string: what "all N matching this filter" carries to
    the operation form (only filters; the order and page do not choose desktops)."""
    from urllib.parse import urlencode

    return urlencode([(key, f[key]) for key in FILTER_KEYS if f.get(key)])


def matching(pool, query: str) -> list:
    """The pool's desktops that match a query_of() string, by name."""
    from django.http import QueryDict

    f = parse(QueryDict(query[:2000]))
    return list(apply(pool.desktops.select_related("datastore"), {**f, "sort": "name"}))
