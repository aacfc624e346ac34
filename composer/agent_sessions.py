"""Sessions reported by the desktops' own agents, for hypervisors that cannot tell (vCenter).

DESIGN: a desktop agent (docs/agent/) posts logon, logoff and heartbeat events to
POST /api/v1/agent/sessions with its endpoint's agent token. The token is write-only: it is
accepted there and nowhere else, and only for desktops of its endpoint's pools. A report
moves `session_user` and `session_reported_at` on the desktop's row, and its state follows
the session as it does on the simulator (Available <-> Connected). pools/sessions.py decides
what the row means (a user, nobody, or unknown when the last report is too old).

Maintenance cannot reach into the guest on vCenter (the driver's log_off raises and
send_message only logs), so the forced-logoff policy talks to the agent instead: the step
(composer/steps.py, wait_for_logoff) leaves a message and a logoff request on the desktop's
row, with the moment the grace period ends; the agent receives them in the answer to its
next report, shows the message and logs the user off when the grace ends. Whether or not the
agent did, the step goes on after the grace period, as on any hypervisor: the desktop is
powered off and rebuilt anyway. Requests are handed over once, and expire shortly after the
grace period, so a later session (after the refresh, or after a cancelled operation) is
never logged off by an old request. A logoff report wakes a desktop parked waiting for its
user, so maintenance goes on at once rather than at its next check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.log import Outcome, record, record_denial
from composer import endpoint_drivers
from composer.drivers.base import DriverError
from composer.inventory import follows_session
from composer.jobs import schedule_dispatch
from composer.models import DesktopTask
from composer.services.authorization import authorize
from pools.models import Desktop, HypervisorEndpoint
from pools.sessions import Session, handed_over, session_of
from pools.states import transition

TOKEN_PREFIX = "lca_"
MAX_TOKEN_LENGTH = 200
PERMISSION = "pools.change_hypervisorendpoint"
MAKE_TOKEN = "make_agent_token"
REFUSED = "agent_report_refused"

LOGON, LOGOFF, HEARTBEAT = "logon", "logoff", "heartbeat"
EVENTS = (LOGON, LOGOFF, HEARTBEAT)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- tokens ---------------------------------------------------------------------------------


def make_token(actor, endpoint: HypervisorEndpoint, request=None) -> str:
    """A new agent token for the endpoint, replacing any it had (agents with the old one are
    refused from now on). The secret is returned once and never stored: only its SHA-256."""
    authorize(
        actor,
        PERMISSION,
        action=MAKE_TOKEN,
        target=endpoint,
        request=request,
        message="Only administrators may make an agent token.",
    )
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        replaced = HypervisorEndpoint.objects.filter(pk=endpoint.pk).values_list(
            "agent_token_prefix", flat=True
        )[0]
        now = timezone.now()
        HypervisorEndpoint.objects.filter(pk=endpoint.pk).update(
            agent_token_prefix=prefix,
            agent_token_digest=_digest(secret),
            agent_token_created_at=now,
        )
        endpoint.agent_token_prefix, endpoint.agent_token_created_at = prefix, now
        record(
            actor=actor,
            action=MAKE_TOKEN,
            outcome=Outcome.SUCCEEDED,
            target=endpoint,
            parameters={"token": f"{prefix}…", "replaced": f"{replaced}…" if replaced else ""},
            request=request,
        )
    return secret


def endpoint_for_token(secret: str) -> HypervisorEndpoint | None:
    """The endpoint whose agent token this is, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
        return None
    prefix = secret[len(TOKEN_PREFIX) :].split("_", 1)[0]
    if not prefix:
        return None
    endpoint = HypervisorEndpoint.objects.filter(agent_token_prefix=prefix).first()
    if endpoint is None or not hmac.compare_digest(endpoint.agent_token_digest, _digest(secret)):
        return None
    return endpoint


# -- what pages show ---------------------------------------------------------------------------


def reports_sessions(endpoint: HypervisorEndpoint) -> bool:
    """Whether the endpoint's hypervisor reports sessions itself (a driver that cannot be
    found: as if it did not, so its desktops show as unknown rather than break a page)."""
    try:
        return endpoint_drivers.driver_class(endpoint).reports_sessions
    except DriverError:
        return False


def sessions_known(endpoint: HypervisorEndpoint) -> bool:
    """Whether maintenance can wait for users on this endpoint: its hypervisor reports
    sessions, or its desktops' agents do (it has an agent token)."""
    return reports_sessions(endpoint) or bool(endpoint.agent_token_prefix)


def session(desktop: Desktop) -> Session:
    """The desktop's session as pages show it (its pool and endpoint loaded with it)."""
    return session_of(desktop, reports_sessions(desktop.pool.endpoint))


# -- reports ----------------------------------------------------------------------------------


class NotFound(Exception):
    """No desktop of that name on the token's endpoint."""


@dataclass
class Reported:
    desktop: str
    session_user: str
    ignored: bool = False
    note: str = ""
    actions: list = field(default_factory=list)


def report(
    endpoint: HypervisorEndpoint,
    desktop_name: str,
    event: str,
    user: str = "",
    at: datetime | None = None,
    request=None,
) -> Reported:
    """Record one event from the desktop's agent and hand it what maintenance asks of it.
    NotFound when the desktop is not the endpoint's (a desktop of another endpoint is
    refused the same way, and the attempt audited)."""
    now = timezone.now()
    at = min(at or now, now)  # a clock ahead of ours must not lock later reports out
    woke = False
    with transaction.atomic():
        # One indexed lookup (the unique name), locking the desktop's row only.
        desktop = (
            Desktop.objects.select_for_update(of=("self",))
            .select_related("pool")
            .filter(name=desktop_name)
            .first()
        )
        if desktop is None:
            raise NotFound(desktop_name)
        if desktop.pool.endpoint_id != endpoint.pk:
            foreign = desktop
        else:
            foreign = None
            actions = handed_over(desktop.agent_actions, now)
            if desktop.agent_actions:
                desktop.agent_actions = []
                desktop.save(update_fields=["agent_actions"])
            if desktop.session_reported_at is not None and at < desktop.session_reported_at:
                return Reported(
                    desktop.name,
                    desktop.session_user,
                    ignored=True,
                    note=f"an event of {at.isoformat()} is older than the last report "
                    f"({desktop.session_reported_at.isoformat()}): ignored",
                    actions=actions,
                )
            session_user = "" if event == LOGOFF else user
            desktop.session_user, desktop.session_reported_at = session_user, at
            desktop.save(update_fields=["session_user", "session_reported_at"])
            new_state = follows_session(desktop.state, session_user)
            if new_state:
                transition(desktop, new_state)
            if not session_user:
                woke = _wake_waiting(desktop)
    if foreign is not None:
        record_denial(
            actor=None,
            action=REFUSED,
            target=foreign,
            message="",
            parameters={
                "endpoint": endpoint.name,
                "token": f"{endpoint.agent_token_prefix}…",
                "event": event,
            },
            request=request,
        )
        raise NotFound(desktop_name)
    if woke:
        schedule_dispatch(endpoint.pk, 0)
    return Reported(desktop.name, desktop.session_user, actions=actions)


def _wake_waiting(desktop: Desktop) -> bool:
    """Nobody is logged on any more: a task parked waiting for the user looks again now."""
    return bool(
        DesktopTask.objects.filter(
            desktop=desktop, status=DesktopTask.Status.WAITING, step="wait_for_logoff"
        ).update(retry_at=timezone.now())
    )
