"""Refresh: back to the checkpoint taken after customization; the persistent disk stays."""

from __future__ import annotations

from composer import steps
from composer.kinds import OperationKind, register
from composer.kinds.base import HelpdeskAction


@register
class Refresh(OperationKind):
    name = "refresh"
    label = "Refresh"
    order = 20
    on_pool_page = True
    helpdesk_permission = "pools.refresh_desktop"
    helpdesk_actions = [
        HelpdeskAction(
            key="refresh",
            label="Refresh",
            loses="Everything written to the desktop since its last checkpoint is thrown away: "
            "programs installed, settings changed and files saved on the system disk. "
            "The persistent disk (the user's data) is kept.",
            button="Refresh the desktop",
            done="refreshed",
            wipes_system_disk=True,
        )
    ]
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("maintenance", steps.maintenance),
        ("power_off", steps.power_off),
        ("revert", steps.revert),
        ("power", steps.power_ready),
    ]
