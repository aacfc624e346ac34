"""Database outages, remembered where they can be: in Redis.

While the database is unreachable the portal cannot write to it, so the web server (its
503 page, portal/views.py) and the workers (a job that failed on it, composer/worker.py)
note the outage in one Redis hash: when it was first and last seen, and by whom. Once the
database is back the dashboard reads the note and says that work paused and resumed; the
note is kept a day after the outage was last seen.
"""

from __future__ import annotations

import datetime
import logging
import time

import django_rq
import redis
from django.db import DatabaseError, InterfaceError, OperationalError, connections

log = logging.getLogger(__name__)

KEY = "portal:database-unreachable"
SHOWN_FOR = 24 * 3600


def is_database_unreachable(exc: BaseException | None) -> bool:
    """Whether an exception means the database could not be reached or dropped the
    connection. psycopg raises those as OperationalError or InterfaceError, but also other
    problems (sqlite: "no such table"); so the database is asked again on a new connection,
    and only one that does not answer is an outage."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    probe = connections.create_connection("default")  # apart from the failed one
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return True
    finally:
        probe.close()
    return False


def note_database_unreachable(seen_by: str, error: BaseException) -> None:
    now = str(time.time())
    try:
        conn = django_rq.get_connection("default")
        with conn.pipeline() as pipe:
            pipe.hsetnx(KEY, "since", now)
            pipe.hset(KEY, mapping={"last": now, "seen_by": seen_by, "error": str(error)[:300]})
            pipe.expire(KEY, SHOWN_FOR)
            pipe.execute()
    except redis.RedisError as exc:  # both down: the log is all that is left
        log.error("database unreachable (%s) and outage not noted in Redis: %s", error, exc)


def last_database_outage() -> dict | None:
    """The outage noted last, if any: {"since", "last" (datetimes), "seen_by", "error"}."""
    try:
        raw = django_rq.get_connection("default").hgetall(KEY)
    except redis.RedisError:
        return None
    if not raw:
        return None
    values = {key.decode(): value.decode() for key, value in raw.items()}
    try:
        since, last = float(values["since"]), float(values["last"])
    except (KeyError, ValueError):
        return None
    return {
        "since": datetime.datetime.fromtimestamp(since, datetime.UTC),
        "last": datetime.datetime.fromtimestamp(last, datetime.UTC),
        "seen_by": values.get("seen_by", ""),
        "error": values.get("error", ""),
    }
