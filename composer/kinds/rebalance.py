"""Rebalance: move linked clones across the pool's selected datastores by free space,
under each one's over-commit limit; planned and approved first (composer/rebalance_planner.py)."""

from __future__ import annotations

from composer import plans, steps
from composer.kinds import OperationKind, register


@register
class Rebalance(OperationKind):
    name = "rebalance"
    label = "Rebalance"
    order = 40
    on_pool_page = True
    planned = True
    frees_replicas = True
    plan_template = "composer/plans/rebalance.html"
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("maintenance", steps.maintenance),
        ("power_off", steps.power_off),
        ("detach_disks", steps.detach_disks),
        ("move_vm", steps.move_vm),
        ("move_disks", steps.move_disks),
        *steps.REBUILD,
    ]

    def plan(self, pool, chosen, extra, busy):
        return plans.plan_rebalance(pool, chosen, busy=busy)

    def check_plan(self, operation):
        return plans.check_rebalance(operation)

    def replica_needed(self, operation, task):
        if not task.target_datastore_id:
            return None  # stays where it is (the plan said why)
        return task.desktop.image_version_id, task.target_datastore_id
