"""Attach a kept persistent disk to a desktop (a user's disk to their new desktop)."""

from __future__ import annotations

from composer import steps
from composer.kinds import OperationKind, register


@register
class AttachDisk(OperationKind):
    name = "attach_disk"
    label = "Attach disk"
    audit_label = "Attach a persistent disk"
    order = 80
    steps = [("attach_disk", steps.attach_kept_disk)]
