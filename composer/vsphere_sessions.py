"""vCenter session cookies shared by the jobs of one worker (composer/worker.py).

One key per worker and vCenter connection (host, port, user), holding the session cookie and
the API version, with a lifetime just under vCenter's idle timeout: a job takes it and goes
on with the session, a job that finds none (or an expired one) logs in and leaves its own.
"""

from __future__ import annotations

import json
import logging
import os

from composer.queue import queue

log = logging.getLogger(__name__)

OWNER_VARIABLE = "PORTAL_WORKER_ID"
IDLE_SECONDS = 25 * 60  # vCenter ends sessions idle for 30 minutes
PREFIX = "vsphere-session:"


def connection():
    return queue().connection


class CookieJar:
    """The driver's view of the store: `get`, `put` and `drop` for its own connection."""

    def __init__(self, owner: str, connection_id: str):
        self.key = f"{PREFIX}{owner}:{connection_id}"

    def get(self) -> dict | None:
        raw = connection().get(self.key)
        return json.loads(raw) if raw else None

    def put(self, cookie: str, version: str) -> None:
        connection().set(
            self.key, json.dumps({"cookie": cookie, "version": version}), ex=IDLE_SECONDS
        )

    def touch(self) -> None:
        connection().expire(self.key, IDLE_SECONDS)

    def drop(self) -> None:
        connection().delete(self.key)


def jar_for(connection_id: str) -> CookieJar | None:
    """The jar of the worker this process belongs to; None outside a worker (each use then
    logs in and out on its own)."""
    owner = os.environ.get(OWNER_VARIABLE)
    return CookieJar(owner, connection_id) if owner else None
