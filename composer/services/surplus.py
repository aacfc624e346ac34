"""Which desktops a shrinking pool may lose, and in what order (services.resize_pool).

A desktop is safe to remove only when nobody can lose anything with it:
- no user is assigned to it (a dedicated desktop is someone's, even while they are away);
- no session is on it, nor may be: not Connected or Disconnected, and its session
  (pools.sessions, as the pages and maintenance see it) is nobody's. Where the hypervisor
  cannot tell sessions (vSphere) that takes a recent report from the desktop's agent: a
  desktop that may be running with no such report has an unknown session and stays;
- it is not in the middle of a change (Provisioning, Customizing, Maintenance, Deleting);
- no other started operation holds it (holds.busy).

Safe desktops go in this order, the ones that serve nobody first:
1. missing (the VM is gone from the hypervisor),
2. in Error,
3. ready and powered off (Provisioned),
4. ready and powered on (Available),
and within each group the newest first (latest created, then the highest name), so the
pool keeps its oldest, lowest-numbered desktops. Persistent disks are never a reason to
keep a desktop: the delete keeps them, detached.
"""

from __future__ import annotations

from pools import sessions
from pools.models import Desktop
from pools.states import BUSY, DesktopState

S = DesktopState

# The order of the groups above; a state not listed here is never removed.
RANK = {S.ERROR: 1, S.PROVISIONED: 2, S.AVAILABLE: 3}
MISSING_RANK = 0


def unsafe_reason(desktop: Desktop, held: dict[int, int], reports_sessions: bool) -> str:
    """Why the desktop must stay ("" when it may go). `reports_sessions`: whether the
    pool's hypervisor tells sessions itself."""
    if desktop.assigned_user:
        return f"assigned to {desktop.assigned_user}"
    if desktop.pk in held:
        return f"busy in operation #{held[desktop.pk]}"
    if desktop.state in BUSY:
        return f"{desktop.get_state_display().lower()}"
    if desktop.missing:
        return ""  # the VM is gone from the hypervisor: nobody can be on it
    session = sessions.session_of(desktop, reports_sessions)
    if session.status == sessions.USER or desktop.state in (S.CONNECTED, S.DISCONNECTED):
        return "a user is logged on"
    if desktop.state not in RANK:
        return f"{desktop.get_state_display().lower()}"
    if session.unknown:
        return "nobody can tell whether a user is logged on (no recent report from its agent)"
    return ""


def removal_order(desktop: Desktop) -> tuple:
    """Sorts the safe desktops in the order they go (the module's docstring)."""
    rank = MISSING_RANK if desktop.missing else RANK[desktop.state]
    # Negated keys sort newest first; (length, name) puts VDI-10 after VDI-9.
    return (rank, -desktop.created_at.timestamp(), _negated(desktop.name))


def _negated(name: str) -> tuple:
    return (-len(name), tuple(-ord(c) for c in name.upper()))


def removable(
    desktops: list[Desktop], held: dict[int, int], reports_sessions: bool
) -> list[Desktop]:
    """The desktops that may go, in the order they go."""
    safe = [d for d in desktops if not unsafe_reason(d, held, reports_sessions)]
    return sorted(safe, key=removal_order)
