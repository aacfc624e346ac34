"""Who may do what, asked once per request by every service: `authorize()` lets the actor
through, or records the denial in the audit log and raises PermissionDenied.

Work the portal starts on its own (by policy, or the reconciler carrying something on) acts
as the system actor, which the audit log names as such rather than "anonymous".
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from audit.actors import SYSTEM_USERNAME
from audit.log import record_denial

MAINTENANCE = "pools.run_maintenance"


def system_actor():
    """The user the portal acts as when no person asked: inactive, with no password, so
    nobody can sign in as it; its username cannot be typed into a sign-in form."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=SYSTEM_USERNAME,
        defaults={"is_active": False, "first_name": "Portal", "last_name": "(policy)"},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def is_system(actor) -> bool:
    return getattr(actor, "username", None) == SYSTEM_USERNAME and not actor.is_active


def allowed(actor, *permissions: str) -> bool:
    """Whether the actor holds any of these permissions (the system actor holds them all)."""
    return is_system(actor) or any(actor.has_perm(p) for p in permissions)


def authorize(
    actor,
    *permissions: str,
    action: str,
    message: str,
    target=None,
    operation=None,
    parameters: dict | None = None,
    request=None,
) -> None:
    """Return if the actor holds any of `permissions`; else record the denial (in its own
    transaction, so it stays whatever the caller's does next) and raise PermissionDenied."""
    if allowed(actor, *permissions):
        return
    raise record_denial(
        actor=actor,
        action=action,
        message=message,
        target=target,
        operation=operation,
        parameters=parameters,
        request=request,
    )
