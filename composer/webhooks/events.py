"""The events a webhook may subscribe to, as receivers see them in `X-Portal-Event`."""

from __future__ import annotations

STARTED = "operation.started"
DESKTOP_FAILED = "operation.desktop_failed"
PAUSED = "operation.paused"
RESUMED = "operation.resumed"
# Whatever the outcome: succeeded, partially_failed, failed, cancelled, refused (the payload's
# "outcome").
FINISHED = "operation.finished"
# Sent only by "Send test event", to the one hook, whatever it subscribes to.
PING = "ping"

EVENTS = {
    STARTED: "Operation started",
    DESKTOP_FAILED: "A desktop failed",
    PAUSED: "Operation paused",
    RESUMED: "Operation resumed",
    FINISHED: "Operation finished (with its outcome)",
}
