"""Estimated time to finish a running operation. Pure: no database, no clock.

From the throughput measured so far in this operation: desktops worked through since it
started, per second, applied to the desktops left. Not the average time one desktop took
divided by the desktops "in flight": desktops handed out wait for a worker, so eight in
flight on one worker made an estimate eight times too short (issue 10, item 4).
"""

from __future__ import annotations

from datetime import timedelta


def estimate(worked: int, remaining: int, elapsed: timedelta) -> timedelta | None:
    """`worked`: desktops that ended after being worked on (succeeded or failed; skipped and
    halted ones take no time and are not counted), `remaining`: desktops not finished yet,
    `elapsed`: time since the operation's desktops started to be handed out. None until one
    desktop has been worked through: there is no throughput to go on yet."""
    if remaining <= 0:
        return timedelta(0)
    if worked <= 0 or elapsed <= timedelta(0):
        return None
    return elapsed * remaining / worked
