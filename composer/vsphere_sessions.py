"""vCenter session cookies shared by the jobs of one worker (composer/worker.py).

One key per worker and vCenter connection (host, port, user), holding the session cookie and
the API version, with a lifetime just under vCenter's idle timeout: a job takes it and goes
on with the session, a job that finds none (or an expired one) logs in and leaves its own.
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)

OWNER_VARIABLE = "PORTAL_WORKER_ID"
IDLE_SECONDS = 25 * 60  # vCenter ends sessions idle for 30 minutes
PREFIX = "vsphere-session:"


def _conn():
    from composer.queue import queue

    return queue().connection


class CookieJar:
    """The driver's view of the store: `get`, `put` and `drop` for its own connection."""

    def __init__(self, owner: str, connection_id: str):
        self.key = f"{PREFIX}{owner}:{connection_id}"

    def get(self) -> dict | None:
        raw = _conn().get(self.key)
        return json.loads(raw) if raw else None

    def put(self, cookie: str, version: str) -> None:
        _conn().set(self.key, json.dumps({"cookie": cookie, "version": version}), ex=IDLE_SECONDS)

    def touch(self) -> None:
        _conn().expire(self.key, IDLE_SECONDS)

    def drop(self) -> None:
        _conn().delete(self.key)


def jar_for(connection_id: str) -> CookieJar | None:
    """The jar of the worker this process belongs to; None outside a worker (each use then
    logs in and out on its own)."""
    owner = os.environ.get(OWNER_VARIABLE)
    return CookieJar(owner, connection_id) if owner else None


def log_out_all(owner: str) -> int:
    """Log out every session the worker `owner` kept (when it stops)."""
    from composer import endpoint_drivers
    from composer.drivers import registry
    from pools.models import HypervisorEndpoint

    conn = _conn()
    keys = list(conn.scan_iter(match=f"{PREFIX}{owner}:*"))
    if not keys:
        return 0
    done = 0
    holding = [r.name for r in registry.registrations() if r.driver_class.holds_session]
    for endpoint in HypervisorEndpoint.objects.filter(driver__in=holding):
        try:
            driver = endpoint_drivers.for_endpoint(endpoint)
        except Exception:  # no password any more, say: nothing to log out with
            continue
        if driver.session.jar is not None and driver.session.jar.key.encode() in keys:
            driver.session.log_out()
            done += 1
    conn.delete(*keys)
    return done
