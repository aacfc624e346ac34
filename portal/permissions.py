"""Permission checks for views. Every denial is answered 403 and written to the audit log."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied

from audit.labels import action_name
from audit.log import record_denial


def deny(request, action: str, target=None) -> PermissionDenied:
    return record_denial(
        actor=request.user,
        action=action,
        target=target,
        parameters={"method": request.method, "path": request.path},
        request=request,
        # "Your role does not allow you to view the audit log."
        message=f"Your role does not allow you to {action_name(action).lower()}.",
    )


def require(*perms: str, action: str):
    """View decorator: the user needs every permission in `perms`, else 403 and an audit event.

    Anonymous users never get here: LoginRequiredMiddleware sends them to the login page.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perms(perms):
                raise deny(request, action)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
