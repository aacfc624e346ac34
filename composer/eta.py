"""Estimated time to finish a running operation. Pure: no database, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta


def estimate(finished: Iterable[timedelta], remaining: int, in_flight: int) -> timedelta | None:
    """Average time one desktop took x desktops left / desktops worked on at once.

    `finished` are the durations of the desktops done so far, `remaining` the desktops not
    finished yet (in flight included), `in_flight` how many run right now. None until one
    desktop has finished: there is nothing to average yet. With nothing in flight (every
    slot waiting for a logoff, say) one at a time is assumed, so the estimate errs long.
    """
    durations = [d for d in finished if d >= timedelta(0)]
    if not durations:
        return None
    if remaining <= 0:
        return timedelta(0)
    average = sum(durations, timedelta(0)) / len(durations)
    return average * remaining / max(1, in_flight)
