"""Live fragments that cost nothing when nothing changed.

Pages that show live status (the pool page, the dashboard) are left open by many people and
poll every POLL_SECONDS. Each fragment carries the version it was rendered at; the next poll
sends it back (`?v=`), and when the version is still current the answer is 204 No Content:
htmx keeps what it shows and polls again, and the server has rendered nothing.

A version is made of the newest `updated_at` of what the fragment shows (each one index
lookup: pools/stamps.py guarantees every write moves it), plus a time bucket, so a fragment is
rendered again at least every REFRESH_SECONDS whatever happens: its relative times ("3 min
ago") move on, and a change whose transaction committed after a younger one was already seen
(its `updated_at` is then older than the newest one seen) shows within that bound.
"""

from __future__ import annotations

import hashlib
import time

from django.db.models import OuterRef, Subquery
from django.http import HttpResponse
from django.middleware.gzip import GZipMiddleware

from composer import outages
from composer.models import DesktopTask, Operation
from composer.queue import URGENT, queue
from pools.models import Datastore, Desktop, HypervisorEndpoint, Pool

REFRESH_SECONDS = 30


def bucket() -> int:
    """The current REFRESH_SECONDS period."""
    return int(time.time() // REFRESH_SECONDS)


def version(*parts) -> str:
    """A short token for these parts and the current time bucket."""
    raw = "|".join(str(p) for p in (*parts, bucket()))
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


_gzip = GZipMiddleware(lambda request: None)


def compressed(request, response):
    """The response gzipped when the browser accepts it (htmx's requests do): a live part goes
    to dozens of watchers every few seconds, its rows alike. Only live parts, which hold no
    form and no secret, so compression reveals nothing (BREACH)."""
    return _gzip.process_response(request, response)


def unchanged(request, current: str) -> HttpResponse | None:
    """204 when the poll's version is the current one; None when the fragment must render."""
    if request.GET.get("v") == current:
        return HttpResponse(status=204)
    return None


def newest(queryset) -> Subquery:
    """The newest updated_at of the rows of `queryset`, as a subquery (one index lookup)."""
    return Subquery(queryset.order_by("-updated_at").values("updated_at")[:1])


def pool_version(pool_id: int, user) -> tuple[str, dict] | None:
    """The pool page's live part: the version, and the newest change of its desktops, of its
    operations and of their desktops' tasks (one query). None if there is no such pool."""
    active = Operation.objects.filter(pool=OuterRef(OuterRef("pk")), status__in=Operation.ACTIVE)
    row = (
        Pool.objects.filter(pk=pool_id)
        .annotate(
            desktops_at=newest(Desktop.objects.filter(pool=OuterRef("pk"))),
            operations_at=newest(Operation.objects.filter(pool=OuterRef("pk"))),
            tasks_at=newest(DesktopTask.objects.filter(operation__in=active.values("pk"))),
        )
        .values_list("desktops_at", "operations_at", "tasks_at")
        .first()
    )
    if row is None:
        return None
    stamps = dict(zip(("desktops", "operations", "tasks"), row, strict=True))
    return version("pool", pool_id, user.pk, *row), stamps


def operation_version(operation_id: int, user) -> str | None:
    """An operation's page: the operation, its desktops' tasks, and the tasks of every live
    operation (a waiting desktop says which slots are in use), in one query."""
    active = Operation.objects.filter(status__in=Operation.ACTIVE).values("pk")
    row = (
        Operation.objects.filter(pk=operation_id)
        .annotate(
            tasks_at=newest(DesktopTask.objects.filter(operation=OuterRef("pk"))),
            others_at=newest(DesktopTask.objects.filter(operation__in=active)),
        )
        .values_list("updated_at", "tasks_at", "others_at")
        .first()
    )
    return None if row is None else version("operation", operation_id, user.pk, *row)


def dashboard_stamps() -> tuple:
    """What the dashboard shows, as of now: the newest change of any desktop, operation,
    task of a live operation, datastore and hypervisor sync, and the pools there are (one
    query of index lookups); the workers and queues (one Redis round trip). A sync error or
    orphan found, or a pool renamed, shows within REFRESH_SECONDS."""
    from django.db import connection

    def table(model) -> str:
        return connection.ops.quote_name(model._meta.db_table)

    active = list(Operation.ACTIVE)
    marks = ", ".join(["%s"] * len(active))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MAX(updated_at) FROM {table(Desktop)}),"
            f" (SELECT MAX(updated_at) FROM {table(Operation)}),"
            f" (SELECT MAX(updated_at) FROM {table(DesktopTask)} WHERE operation_id IN"
            f"  (SELECT id FROM {table(Operation)} WHERE status IN ({marks}))),"
            f" (SELECT MAX(updated_at) FROM {table(Datastore)}),"
            f" (SELECT MAX(synced_at) FROM {table(HypervisorEndpoint)}),"
            f" (SELECT COUNT(*) FROM {table(Pool)}), (SELECT MAX(id) FROM {table(Pool)})",
            active,
        )
        stamps = cursor.fetchone()
    return (*stamps, _queue_state())


def memo(key: tuple, compute):
    """compute(), shared by every request that asks with the same key in the same
    REFRESH_SECONDS (keys carry the stamps the value depends on): dozens of watchers polling
    the same change cost one computation per process."""
    from django.core.cache import cache

    name = "live:" + version(*key)
    value = cache.get(name)
    if value is None:
        value = compute()
        cache.set(name, value, 2 * REFRESH_SECONDS)
    return value


def _queue_state() -> tuple:
    """Workers and queue lengths as the dashboard shows them, in one pipelined round trip."""
    try:
        q = queue()
        pipe = q.connection.pipeline(transaction=False)
        pipe.smembers("rq:workers")
        pipe.llen(q.key)
        pipe.llen(queue(URGENT).key)
        pipe.zcard(q.scheduled_job_registry.key)
        pipe.hgetall(outages.KEY)
        workers, queued, urgent, scheduled, outage = pipe.execute()
        return (sorted(workers), queued, urgent, scheduled, sorted(outage.items()))
    except Exception as exc:  # Redis down: the fragment renders and says so
        return ("redis", type(exc).__name__, time.time())
