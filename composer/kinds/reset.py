"""Reset: power a hung desktop off and on again at the hypervisor, as pressing its reset
button would, when a restart cannot work because the guest OS no longer answers.

The worked example of docs/adding-an-operation-kind.md: this module is all a new kind takes.
"""

from __future__ import annotations

from composer import steps
from composer.kinds import OperationKind, register
from composer.kinds.base import HelpdeskAction


@register
class Reset(OperationKind):
    name = "reset"
    label = "Reset"
    order = 55  # after Power on the pages
    on_pool_page = True
    dangerous = True  # unsaved work is lost and the guest is not shut down cleanly
    helpdesk_permission = "pools.power_desktop"  # helpdesk may restart, so may it reset
    helpdesk_actions = [
        HelpdeskAction(
            key="reset",
            label="Reset",
            loses="Like pulling the plug: unsaved work in open applications is lost and "
            "Windows is not shut down cleanly. Use it when Restart does not work.",
            button="Reset the desktop",
            done="reset",
        )
    ]
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("maintenance", steps.maintenance),
        ("power_off", steps.power_off),  # at the hypervisor: the guest is not asked
        ("power", steps.power_ready),  # back on, or left off, as the pool's policy says
    ]
