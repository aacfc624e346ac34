"""Registering an image version: a snapshot of a base image's parent VM.

The hypervisor is asked first: the parent VM and the snapshot must exist (by path, or by a
name only one VM has), and the sizes the over-commit accounting needs are read from it
instead of being typed in. Their ids are kept, so later lookups do not depend on names.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from audit.log import Outcome, record
from composer import endpoint_drivers
from composer.drivers.base import DriverError, DriverTimeout, Unreachable
from composer.services.authorization import authorize
from pools.models import BaseImage, ImageVersion

PERMISSION = "pools.add_imageversion"
ACTION = "register_image_version"


class VersionRefused(Exception):
    """The version cannot be registered; the message says why, for the administrator.
    `unreachable`: the hypervisor did not answer, so the same request may succeed later."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def register_version(actor, image: BaseImage, snapshot: str, request=None) -> ImageVersion:
    authorize(
        actor,
        PERMISSION,
        action=ACTION,
        target=image,
        request=request,
        message="Only administrators may register image versions.",
    )
    snapshot = snapshot.strip()
    problem = _check_name(snapshot)
    if not problem and image.versions.filter(snapshot=snapshot).exists():
        problem = f"{image.name} @ {snapshot} is registered already."
    ref, unreachable = None, False
    if not problem:
        try:
            ref = endpoint_drivers.for_endpoint(image.endpoint).describe_image(
                image.parent_vm, snapshot, image.parent_ref
            )
        except (DriverError, ValueError) as exc:
            problem = str(exc)
            unreachable = isinstance(exc, Unreachable | DriverTimeout)
    if not problem and not ref.disk_mb:
        problem = f"the hypervisor did not report the size of {image.parent_vm}'s disks"
    if problem:
        record(
            actor=actor,
            action=ACTION,
            outcome=Outcome.REFUSED,
            target=image,
            # As typed, but printable: PostgreSQL refuses a NUL anywhere in a text or JSON.
            parameters={"snapshot": _printable(snapshot[:255])},
            message=problem,
            request=request,
        )
        raise VersionRefused(problem, unreachable=unreachable)
    try:
        with transaction.atomic():
            if image.parent_ref != ref.parent_ref:
                image.parent_ref = ref.parent_ref
                image.save(update_fields=["parent_ref"])
            version = ImageVersion.objects.create(
                image=image,
                snapshot=snapshot,
                snapshot_ref=ref.snapshot_ref,
                disk_mb=ref.disk_mb,
                used_mb=ref.used_mb or ref.disk_mb,
            )
            record(
                actor=actor,
                action=ACTION,
                outcome=Outcome.SUCCEEDED,
                target=version,
                parameters={
                    "image": image.name,
                    "snapshot": snapshot,
                    "disk_mb": version.disk_mb,
                    "used_mb": version.used_mb,
                },
                request=request,
            )
    except IntegrityError as exc:  # the same snapshot registered by someone at the same time
        raise VersionRefused(f"{image.name} @ {snapshot} is registered already.") from exc
    return version


def _check_name(snapshot: str) -> str:
    if not snapshot:
        return "Name the snapshot to register."
    if len(snapshot) > 255:
        return "A snapshot name is at most 255 characters."
    if any(ord(c) < 32 or ord(c) == 127 for c in snapshot):
        return "A snapshot name has no control characters."
    return ""


def _printable(text: str) -> str:
    return "".join(c if ord(c) >= 32 and ord(c) != 127 else f"\\x{ord(c):02x}" for c in text)
