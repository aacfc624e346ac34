"""Webhooks: administrators register HTTPS endpoints for operation events; the engine emits
the events where an operation changes (emitting.py), RQ jobs POST them signed, with bounded
retries (delivery.py). Hooks are managed through hooks.py by the pages and the API alike.
"""

# The delivery job's module too, so a worker has it loaded before it forks (composer/worker.py
# imports the jobs, which import this).
from composer.webhooks import delivery  # noqa: F401
from composer.webhooks.emitting import emit
from composer.webhooks.events import (
    DESKTOP_FAILED,
    EVENTS,
    FINISHED,
    PAUSED,
    PING,
    RESUMED,
    STARTED,
)

__all__ = ["DESKTOP_FAILED", "EVENTS", "FINISHED", "PAUSED", "PING", "RESUMED", "STARTED", "emit"]
