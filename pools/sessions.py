"""Who is logged on to a desktop, as far as the portal knows: a user, nobody, or unknown.

A hypervisor that reports sessions (the simulator) is the truth: its last word is on the
row (`session_user`, kept by the inventory sync and the steps). vCenter cannot tell, so there
the desktop's own agent reports logons and logoffs (POST /api/v1/agent/sessions), and the row
is only as good as the agent's last report: one older than AGENT_SESSION_TIMEOUT_SECONDS, or
none at all, says nothing, and the session is "unknown". Maintenance treats unknown as logged
on under the "wait" policy (composer/steps.py: safe by default); pages show it as such.

The pages and the engine both ask here, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from pools.states import DesktopState

USER, NOBODY, UNKNOWN = "user", "none", "unknown"
# What the agent is asked to do with its next report (not operation kinds: the agent's own).
MESSAGE, LOGOFF = "message", "logoff"

# States in which the VM may be running with someone on it. A powered-off desktop
# (Provisioned) or one still being built or deleted has nobody, whatever was last reported.
MAY_HAVE_SESSION = frozenset(
    {
        DesktopState.AVAILABLE,
        DesktopState.CONNECTED,
        DesktopState.DISCONNECTED,
        DesktopState.MAINTENANCE,
        DesktopState.ERROR,
    }
)


@dataclass(frozen=True)
class Session:
    status: str  # USER, NOBODY or UNKNOWN
    user: str = ""

    @property
    def unknown(self) -> bool:
        return self.status == UNKNOWN

    @property
    def logged_on(self) -> bool:
        """Whether maintenance must reckon with someone: a user, or possibly one."""
        return self.status != NOBODY

    def __str__(self) -> str:
        if self.status == USER:
            return self.user
        return "unknown" if self.status == UNKNOWN else ""


def timeout() -> timedelta:
    return timedelta(seconds=settings.AGENT_SESSION_TIMEOUT_SECONDS)


def reported_session(
    session_user: str, reported_at: datetime | None, now: datetime | None = None
) -> Session:
    """The session the desktop's agent reported, if its report is recent enough."""
    now = now or timezone.now()
    if reported_at is None or now - reported_at > timeout():
        return Session(UNKNOWN)
    return Session(USER, session_user) if session_user else Session(NOBODY)


def session_of(desktop, reports_sessions: bool, now: datetime | None = None) -> Session:
    """The desktop's session, given whether its endpoint's driver reports sessions itself
    (composer.endpoint_drivers.driver_class(endpoint).reports_sessions)."""
    if reports_sessions:
        return Session(USER, desktop.session_user) if desktop.session_user else Session(NOBODY)
    if desktop.state not in MAY_HAVE_SESSION:
        return Session(NOBODY)
    return reported_session(desktop.session_user, desktop.session_reported_at, now)


# -- what maintenance asks of the desktop's agent (Desktop.agent_actions) ---------------------
# The forced-logoff policy cannot reach into the guest on vCenter, so the step leaves its
# requests on the row and the agent receives them in the answer to its next report
# (composer/agent_sessions.py). Stored with the moment the grace period ends.

# How long after the grace period a logoff request is still handed over: later, the desktop
# is being rebuilt, or the operation is gone, and a new session must not be ended by it.
LOGOFF_EXPIRES_AFTER = timedelta(seconds=60)


def warning_actions(text: str, grace_ends: datetime) -> list[dict]:
    """Show `text` now; log the user off when the grace period ends."""
    return [
        {"type": MESSAGE, "text": text, "until": grace_ends.isoformat()},
        {
            "type": LOGOFF,
            "until": (grace_ends + LOGOFF_EXPIRES_AFTER).isoformat(),
            "at": grace_ends.isoformat(),
        },
    ]


def handed_over(stored, now: datetime) -> list[dict]:
    """The stored requests as the agent receives them: those not expired, a logoff with the
    seconds left until it is due (the agent's clock may differ from ours)."""
    out = []
    for action in stored if isinstance(stored, list) else []:
        try:
            if datetime.fromisoformat(action["until"]) < now:
                continue
            if action["type"] == MESSAGE:
                out.append({"type": MESSAGE, "text": str(action["text"])})
            elif action["type"] == LOGOFF:
                left = (datetime.fromisoformat(action["at"]) - now).total_seconds()
                out.append({"type": LOGOFF, "in_seconds": max(0, int(left))})
        except (KeyError, TypeError, ValueError):
            continue  # not one of ours: never a reason to fail the agent's report
    return out
