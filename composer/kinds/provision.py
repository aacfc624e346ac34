"""Provision: new desktops of a pool, built from its image version (DESIGN.md)."""

from __future__ import annotations

from composer import steps
from composer.kinds import PROVISIONING, OperationKind, register


@register
class Provision(OperationKind):
    name = "provision"
    label = "Provision"
    order = 10
    steps = steps.PROVISION
    limit_class = PROVISIONING
    # New desktops are not in service yet: min_ready does not hold them back.
    disruptive = False
    takes_logoff_policy = False
    maintenance_options = False  # started by creating a pool, not from the operation form

    def replica_needed(self, operation, task):
        return task.desktop.image_version_id, task.desktop.datastore_id
