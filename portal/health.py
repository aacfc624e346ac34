"""/healthz, for load balancers and uptime checks: 200 when the portal can do its work, 503
naming the part that cannot. No sign-in, no audit event, and nothing in the answer but the
checks' names and whether each passed (no versions, hosts or counts).

The checks: the database answers; Redis answers; at least one rq worker is alive; rq's
scheduler runs (a `rqworker --with-scheduler`: jobs enqueued for later start only through
it); the reconciler finished a run recently. Cheap: one query, and two pipelined round trips
to Redis (composer/runtime_state.py), each bounded, so a stalled database or Redis answers
503 within about two seconds instead of holding the probe until it gives up.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection, connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from composer import runtime_state
from composer.queue import quick_connection

log = logging.getLogger(__name__)

# How long each part may take to answer. The database is asked in a thread of its own,
# since a stalled server holds a query for as long as TCP does; Redis through sockets with
# this timeout.
DATABASE_TIMEOUT = 1.5
REDIS_TIMEOUT = 0.8

# Slack on top of the reconciler's interval, in seconds: see reconciler_late_after().
RECONCILER_SLACK = 60


def reconciler_late_after() -> float:
    """Seconds after its last finished run that the reconciler counts as late.

    `runcron` enqueues a run every RECONCILE_INTERVAL_SECONDS; the job then waits its turn on
    the default queue (behind desktop jobs while the workers are busy) and takes a while
    itself (it syncs every endpoint's inventory). Three intervals plus a minute rides out a
    slow run or two and a busy queue; later than that, two runs in a row went missing: cron
    is down, or no worker takes its jobs. The clocks of the hosts are assumed in step (NTP).
    """
    return 3 * settings.RECONCILE_INTERVAL_SECONDS + RECONCILER_SLACK


class DatabaseCheck:
    """`SELECT 1` in a thread of its own, started at once so that Redis is asked meanwhile;
    answer() waits for it until DATABASE_TIMEOUT from the start."""

    def __init__(self):
        self.started = time.monotonic()
        self.outcome: list[bool] = []
        # A daemon thread: one stuck on a stalled server must not keep the process alive.
        self.thread = threading.Thread(target=self.ask, name="healthz-database", daemon=True)
        self.thread.start()

    def ask(self):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                self.outcome.append(cursor.fetchone() == (1,))
        except DatabaseError:
            self.outcome.append(False)
        finally:
            connections.close_all()  # this thread's own connection

    def answer(self) -> bool:
        self.thread.join(max(0.0, DATABASE_TIMEOUT - (time.monotonic() - self.started)))
        return self.outcome == [True]


def machinery() -> dict[str, bool]:
    """Redis, workers, scheduler, reconciler; all False when Redis does not answer (they
    cannot be known then)."""
    try:
        state = runtime_state.read(quick_connection(REDIS_TIMEOUT))
    except redis.exceptions.RedisError:
        return dict.fromkeys(("redis", "workers", "scheduler", "reconciler"), False)
    reconciled = state.reconciled_at
    return {
        "redis": True,
        "workers": state.live_workers > 0,
        "scheduler": state.scheduler_alive,
        "reconciler": reconciled is not None
        and time.time() - reconciled <= reconciler_late_after(),
    }


@login_not_required
@require_safe
@never_cache
def healthz(request):
    database = DatabaseCheck()
    others = machinery()
    checks = {"database": database.answer(), **others}
    healthy = all(checks.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "failing", "checks": checks},
        status=200 if healthy else 503,
    )
    if not healthy:
        # A failing check is news for the operator, not a fault of this page: one WARNING
        # naming the parts, instead of Django's ERROR "Service Unavailable" for every probe.
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        log.warning("health check failing: %s", failing)
        response._has_been_logged = True  # django.utils.log.log_response skips it
    return response
