"""The desktop state machine: the one place that knows which state changes are allowed.

Every change of a desktop's state goes through `transition()`. A change not listed in
ALLOWED is a bug in the caller, so it raises instead of being silently accepted.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DesktopState(models.TextChoices):
    PROVISIONING = "provisioning", "Provisioning"
    CUSTOMIZING = "customizing", "Customizing"
    PROVISIONED = "provisioned", "Provisioned"  # ready, powered off
    AVAILABLE = "available", "Available"  # ready, powered on
    CONNECTED = "connected", "Connected"
    DISCONNECTED = "disconnected", "Disconnected"
    MAINTENANCE = "maintenance", "Maintenance"
    ERROR = "error", "Error"
    DELETING = "deleting", "Deleting"


S = DesktopState

ALLOWED: dict[str, frozenset[str]] = {
    # Provisioning: clone, then customize; a failed clone is an Error with its reason.
    S.PROVISIONING: frozenset({S.CUSTOMIZING, S.ERROR, S.DELETING}),
    # Customizing ends ready (on or off, by power policy) or in Error.
    S.CUSTOMIZING: frozenset({S.PROVISIONED, S.AVAILABLE, S.ERROR, S.MAINTENANCE, S.DELETING}),
    S.PROVISIONED: frozenset({S.AVAILABLE, S.MAINTENANCE, S.ERROR, S.DELETING}),
    S.AVAILABLE: frozenset({S.CONNECTED, S.PROVISIONED, S.MAINTENANCE, S.ERROR, S.DELETING}),
    S.CONNECTED: frozenset({S.DISCONNECTED, S.AVAILABLE, S.MAINTENANCE, S.ERROR}),
    S.DISCONNECTED: frozenset({S.CONNECTED, S.AVAILABLE, S.MAINTENANCE, S.ERROR}),
    # Maintenance always ends: ready again, rebuilt (customizing), in Error, or deleted.
    S.MAINTENANCE: frozenset({S.CUSTOMIZING, S.PROVISIONED, S.AVAILABLE, S.ERROR, S.DELETING}),
    # An Error desktop can be repaired by any maintenance operation or by provisioning again,
    # so it is never stuck waiting for a recompose.
    S.ERROR: frozenset({S.MAINTENANCE, S.PROVISIONING, S.DELETING}),
    S.DELETING: frozenset({S.ERROR}),
}

# States in which a desktop is ready for a user.
READY = frozenset({S.PROVISIONED, S.AVAILABLE, S.CONNECTED, S.DISCONNECTED})
# States a running operation holds a desktop in.
BUSY = frozenset({S.PROVISIONING, S.CUSTOMIZING, S.MAINTENANCE, S.DELETING})


class IllegalTransition(Exception):
    def __init__(self, desktop_name: str, old: str, new: str):
        super().__init__(f"{desktop_name}: illegal state change {old} -> {new}")
        self.old, self.new = old, new


def check(name: str, old: str, new: str) -> None:
    if new not in ALLOWED.get(old, frozenset()):
        raise IllegalTransition(name, old, new)


def transition(desktop, new: str, reason: str = "", save: bool = True) -> None:
    """Move `desktop` to state `new`, raising IllegalTransition if that change is not allowed.

    `reason` is kept for Error (why it failed) and cleared on any other state, so a desktop
    that recovered does not keep showing an old failure.
    """
    old = desktop.state
    check(desktop.name, old, new)
    desktop.state = new
    desktop.reason = reason if new == S.ERROR else ""
    desktop.state_changed_at = timezone.now()
    if save:
        desktop.save(update_fields=["state", "reason", "state_changed_at", "updated_at"])
