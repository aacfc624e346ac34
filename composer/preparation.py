"""Before an operation's desktops are handed to workers: its frozen plan is checked against
the inventory (planned kinds), the kind prepares (recompose: the pool's default image), and
the replicas its desktops need are made, once each.
"""

from __future__ import annotations

import logging

from composer import replicas
from composer.drivers.base import DriverError
from composer.lifecycle import fail_task
from composer.models import DesktopTask, Operation
from pools.models import Datastore, ImageVersion

log = logging.getLogger(__name__)

TaskStatus = DesktopTask.Status


def prepare(operation: Operation) -> str:
    """Check the frozen plan against the inventory and make the replicas the desktops need.

    Returns a refusal message when the plan no longer holds (nothing is touched then), else
    an empty string. Desktops whose replica cannot be made fail now; the others go on.
    """
    kind = operation.spec
    if kind.planned:
        problems = kind.check_plan(operation)
        if problems:
            return "The inventory changed since the plan was approved: " + "; ".join(problems)
    kind.prepare(operation)
    needed: dict[tuple[int, int], list[DesktopTask]] = {}
    for task in operation.tasks.filter(status=TaskStatus.PENDING).select_related(
        "desktop__datastore__endpoint",
        "desktop__image_version__image",
        "target_datastore__endpoint",
    ):
        target = kind.replica_needed(operation, task) if task.desktop is not None else None
        if target is not None:
            needed.setdefault(target, []).append(task)
    for (version_id, datastore_id), waiting in needed.items():
        version = ImageVersion.objects.select_related("image").get(pk=version_id)
        datastore = Datastore.objects.select_related("endpoint").get(pk=datastore_id)
        try:
            replicas.ensure_replica(version, datastore)
        except DriverError as exc:
            message = f"replica of {version} on {datastore.name} failed: {exc}"
            log.warning("operation %s: %s", operation.pk, message)
            for task in waiting:
                fail_task(task, message)
    return ""
