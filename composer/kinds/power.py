"""Power: start, shut down or restart desktops."""

from __future__ import annotations

from django import forms

from composer import steps
from composer.kinds import OperationKind, register
from composer.kinds.base import HelpdeskAction

ACTIONS = [("start", "Start"), ("shutdown", "Shut down"), ("restart", "Restart")]


@register
class Power(OperationKind):
    name = "power"
    label = "Power"
    order = 50
    on_pool_page = True
    helpdesk_permission = "pools.power_desktop"
    helpdesk_actions = [
        HelpdeskAction(
            key="restart",
            label="Restart",
            extra={"action": "restart"},
            loses="Unsaved work in open applications is lost; files already saved are kept.",
            button="Restart the desktop",
            done="restarted",
        )
    ]
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("maintenance", steps.maintenance),
        ("power_action", steps.power_action),
    ]

    def helpdesk_allows(self, extra):
        # Helpdesk restarts a user's desktop; starting or shutting down is maintenance.
        return extra.get("action", "restart") == "restart"

    def steps_for(self, operation):
        if operation.options.get("action") == "start":
            # A desktop that is off has nobody logged on: nothing to wait for.
            return [s for s in self.steps if s[1] is not steps.wait_for_logoff]
        return self.steps

    def form_fields(self, pool):
        return {"action": forms.ChoiceField(choices=ACTIONS, label="Power action")}

    def extra(self, cleaned_data):
        return {"action": cleaned_data["action"]}

    def describe(self, options):
        return [("Power action", str(options.get("action", "")).capitalize())]
