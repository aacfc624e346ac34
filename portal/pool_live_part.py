"""The pool page's live part: polled every POLL_SECONDS while an operation runs on the pool,
by everyone who keeps the page open.

A poll costs little and sends little (bench/pages.py measures both):
- nothing changed since the last poll (portal/live.py's version): 204, nothing rendered;
- otherwise the progress of the pool's operations, and, swapped in place out of band, only
  the rows of the page that changed since the last poll and the list of recent operations
  only if an operation of the pool changed.

The poll's address carries what the server needs for that and nothing more: the version,
when the last poll was answered, the time bucket, and the ids of the rows the page shows
(as ranges: a page sorted by name is mostly consecutive ids).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from composer import agent_sessions, progress
from composer.models import DesktopTask, Operation
from pools.models import Desktop, Pool
from portal import live
from portal.desktop_filters import int_param

# A poll sends again what changed this long before the last poll: a write that took its
# updated_at before the last poll but committed just after it is not missed. A slower one
# shows at the next time bucket, whose poll looks live.REFRESH_SECONDS further back.
OVERLAP = timedelta(seconds=1)

# The result of what just ended stays in the live part this long.
JUST_ENDED = timedelta(minutes=10)

# At most this many row ids in a poll's address (a page has 100).
MAX_ROWS = 200


def active_operations(pool: Pool) -> list[Operation]:
    return progress.attach_all(
        Operation.objects.filter(pool=pool, status__in=Operation.ACTIVE).order_by("requested_at")
    )


def encode_ids(ids: list[int]) -> str:
    """Runs of evenly spaced ids as first-last or first-last/step: 1,2,3,4,9 -> "1-4,9";
    pools that grew together interleave their ids, 1,4,7,10 -> "1-10/3"."""
    ids = sorted(set(ids))
    parts, i = [], 0
    while i < len(ids):
        j = i + 1
        if j < len(ids):
            step = ids[j] - ids[i]
            while j + 1 < len(ids) and ids[j + 1] - ids[j] == step:
                j += 1
        if j - i >= 2:  # three or more evenly spaced
            parts.append(f"{ids[i]}-{ids[j]}" + (f"/{step}" if step > 1 else ""))
            i = j + 1
        else:
            parts.append(str(ids[i]))
            i += 1
    return ",".join(parts)


def decode_ids(raw: str) -> list[int]:
    """The ids of encode_ids(), at most MAX_ROWS; anything malformed is left out."""
    ids: list[int] = []
    for part in raw[:4000].split(","):
        span, _, step_text = part.partition("/")
        low, _, high = span.partition("-")
        first, last = int_param(low), int_param(high or low)
        step = int_param(step_text or "1")
        if first and last and step and first <= last:
            room = MAX_ROWS - len(ids)
            ids.extend(range(first, min(last, first + step * (room - 1)) + 1, step))
        if len(ids) >= MAX_ROWS:
            break
    return sorted(set(ids))[:MAX_ROWS]


def window(get) -> datetime | None:
    """Since when changes are sent: shortly before the last poll, or a time bucket further
    back when the bucket turned; None (send everything) when the poll does not say."""
    try:
        since, bucket = float(get.get("since", "")), int(get.get("b", ""))
    except ValueError:
        return None
    if not math.isfinite(since):
        return None
    start = since - OVERLAP.total_seconds()
    if bucket != live.bucket():
        start -= live.REFRESH_SECONDS
    return datetime.fromtimestamp(min(max(start, 0), time.time()), tz=UTC)


def changed_rows(pool: Pool, ids: list[int], active: list, since: datetime | None):
    """The desktops among `ids` (the rows the page shows) that changed, or whose task in a
    running operation changed, since `since` (all of them if None); and the ids of those no
    longer in the pool (deleted), which the page drops. Three queries at most."""
    desktops = Desktop.objects.filter(pool=pool, pk__in=ids)
    gone: list[int] = []
    if since is not None:
        tasks = DesktopTask.objects.filter(
            operation__in=active, desktop__in=ids, updated_at__gte=since
        )
        marks = dict(
            desktops.annotate(
                changed=Q(updated_at__gte=since) | Q(pk__in=tasks.values("desktop"))
            ).values_list("pk", "changed")
        )
        gone = [pk for pk in ids if pk not in marks]
        desktops = Desktop.objects.filter(pk__in=[pk for pk, changed in marks.items() if changed])
    rows = list(desktops.select_related("datastore", "image_version").order_by("name"))
    attach_steps(rows, active)
    return rows, gone


def attach_steps(desktops: list[Desktop], active: list) -> None:
    """The step each desktop is in, from the operations running on the pool."""
    steps = {}
    if active and desktops:
        steps = dict(
            DesktopTask.objects.filter(
                operation__in=active,
                desktop__in=[d.pk for d in desktops],
                status__in=DesktopTask.IN_FLIGHT,
            ).values_list("desktop_id", "step")
        )
    for desktop in desktops:
        desktop.step = steps.get(desktop.pk, "")


def context(
    pool: Pool, ids: list[int], active: list, version: str, operations: bool = True
) -> dict:
    """What the live part shows, and where its next poll goes. `operations`: whether to
    include the pool's recent and just-ended operations (only when one of them changed)."""
    poll = urlencode(
        {
            "v": version,
            "since": f"{time.time():.3f}",
            "b": live.bucket(),
            "rows": encode_ids(ids),
        },
        safe=",",
    )
    data = {
        "pool": pool,
        "active_operations": active,
        # Polls only while an operation runs; the last poll after it ends shows the result.
        "live": bool(active),
        "live_url": reverse("pools:live", args=[pool.pk]) + "?" + poll,
        "poll_seconds": settings.POLL_SECONDS,
        "with_operations": operations,
        # Whether the desktop rows' sessions come from the hypervisor or from the agents.
        "reports_sessions": agent_sessions.reports_sessions(pool.endpoint),
    }
    if operations:
        data["recent_operations"] = Operation.objects.filter(pool=pool).order_by("-requested_at")[
            :5
        ]
        # The result of what just ended: the last poll of an operation shows how it ended
        # instead of its progress block just vanishing.
        data["just_ended"] = progress.attach_all(
            Operation.objects.filter(
                pool=pool,
                status__in=Operation.FINISHED,
                finished_at__gte=timezone.now() - JUST_ENDED,
            ).order_by("-finished_at")[:3]
        )
    return data
