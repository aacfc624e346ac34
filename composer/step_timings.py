"""How long desktop steps take: a histogram every worker adds to and /metrics reads.

Why Redis counters and not the database: a desktop task records only the step it is at, not
when each step began or ended, so timings cannot be derived from the rows; and deriving them
from a table of every step ever run would grow with the estate while a scrape must stay
cheap. Here each finished step adds one to its bucket and its seconds to the sum, in one
MULTI/EXEC round trip, in one hash shared by every worker on every host; a scrape reads the
whole hash in one HGETALL. The counts only ever grow, so they are a Prometheus histogram
as they are (a Redis that loses its data starts them again from zero, which Prometheus
reads as a counter reset).

Fields: "<kind>|<step>|<bucket>" (the bucket's upper bound, "+Inf" last) and
"<kind>|<step>|sum". Buckets are stored per bucket, not cumulative: the reader adds them up.
"""

from __future__ import annotations

import logging
import math

import redis

log = logging.getLogger(__name__)

KEY = "portal:metrics:step_seconds"

# Upper bounds in seconds: from a simulated step (a fraction of a second) to a vSphere clone
# of a large disk (many minutes).
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, math.inf)


def bucket_label(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def record(conn, kind: str, step: str, seconds: float) -> None:
    """Count one finished step. Never fails the step: a Redis error is logged."""
    bound = next(b for b in BUCKETS if seconds <= b)
    try:
        with conn.pipeline(transaction=True) as pipe:
            pipe.hincrby(KEY, f"{kind}|{step}|{bucket_label(bound)}", 1)
            pipe.hincrbyfloat(KEY, f"{kind}|{step}|sum", seconds)
            pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("step %s of %s: duration not recorded (%s)", step, kind, exc)


def read_raw(pipe) -> None:
    """Queue the read on a pipeline (composer/runtime_state.py); parse its answer."""
    pipe.hgetall(KEY)


def parse(raw: dict) -> dict[tuple[str, str], tuple[list[tuple[str, int]], float]]:
    """(kind, step) -> ([(bucket, cumulative count), ... "+Inf" last], sum of seconds)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    sums: dict[tuple[str, str], float] = {}
    for field, value in raw.items():
        kind, step, part = field.decode().split("|")
        if part == "sum":
            sums[(kind, step)] = float(value)
        else:
            counts.setdefault((kind, step), {})[part] = int(value)
    histograms = {}
    for key in sorted(counts.keys() | sums.keys()):
        total, buckets = 0, []
        for bound in BUCKETS:
            label = bucket_label(bound)
            total += counts.get(key, {}).get(label, 0)
            buckets.append((label, total))
        histograms[key] = (buckets, sums.get(key, 0.0))
    return histograms
