"""How long desktop steps take: a histogram every worker adds to and /metrics reads.

Why Redis counters and not the database: a desktop task records only the step it is at, not
when each step began or ended, so timings cannot be derived from the rows; and deriving them
from a table of every step ever run would grow with the estate while a scrape must stay
cheap. Here the counts live in one Redis hash shared by every worker on every host, and a
scrape reads it in one HGETALL. The counts only ever grow, so they are a Prometheus
histogram as they are (a Redis that loses its data starts them again from zero, which
Prometheus reads as a counter reset).

The runner (composer/steps.py) notes each finished step in this process, and the notes go
to Redis in one MULTI/EXEC round trip at most every FLUSH_SECONDS and when the job ends
(composer/jobs.py): a step each would have cost the queue's Redis four commands per step,
ten times what the orchestration itself costs per desktop (README, Scaling out). A work
horse killed mid-job loses its last few seconds of notes, which a histogram can spare.

Fields: "<kind>|<step>|<bucket>" (the bucket's upper bound, "+Inf" last) and
"<kind>|<step>|sum". Buckets are stored per bucket, not cumulative: the reader adds them up.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, defaultdict

import redis

log = logging.getLogger(__name__)

KEY = "portal:metrics:step_seconds"

# Upper bounds in seconds: from a simulated step (a fraction of a second) to a vSphere clone
# of a large disk (many minutes).
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, math.inf)


def bucket_label(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


# Counts and sums noted in this process and not yet in Redis.
_counts: Counter[str] = Counter()
_sums: defaultdict[str, float] = defaultdict(float)
_flushed_at = time.monotonic()
FLUSH_SECONDS = 5.0


def record(kind: str, step: str, seconds: float) -> None:
    """Note one finished step (in this process: see flush)."""
    bound = next(b for b in BUCKETS if seconds <= b)
    _counts[f"{kind}|{step}|{bucket_label(bound)}"] += 1
    _sums[f"{kind}|{step}|sum"] += seconds


def flush(conn, unless_recent: bool = False) -> None:
    """Add the notes to Redis in one round trip; with unless_recent, only if the last flush
    was FLUSH_SECONDS ago. Never fails the caller: a Redis error is logged, the notes kept."""
    global _flushed_at
    if not _counts or (unless_recent and time.monotonic() - _flushed_at < FLUSH_SECONDS):
        return
    try:
        with conn.pipeline(transaction=True) as pipe:
            for field, n in _counts.items():
                pipe.hincrby(KEY, field, n)
            for field, seconds in _sums.items():
                pipe.hincrbyfloat(KEY, field, seconds)
            pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("step durations not recorded yet (%s)", exc)
        return
    _counts.clear()
    _sums.clear()
    _flushed_at = time.monotonic()


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
