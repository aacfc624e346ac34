"""Log off: end the user's session on each desktop; the desktop itself is not changed."""

from __future__ import annotations

from composer import steps
from composer.kinds import OperationKind, register
from composer.kinds.base import HelpdeskAction


@register
class Logoff(OperationKind):
    name = "logoff"
    label = "Log off"
    order = 60
    on_pool_page = True
    dangerous = True  # the user's unsaved work is lost
    disruptive = False  # the desktop stays in service
    # Logging off is the operation itself: the engine neither waits nor warns first.
    takes_logoff_policy = False
    helpdesk_permission = "pools.logoff_desktop"
    helpdesk_actions = [
        HelpdeskAction(
            key="logoff",
            label="Log off",
            loses="The user's session ends: open applications are closed and unsaved work is "
            "lost. The desktop itself is not changed.",
            button="Log the user off",
        )
    ]
    steps = [("log_off", steps.log_off)]
