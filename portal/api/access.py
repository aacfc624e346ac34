"""Who may call what: the same permissions as the pages, and every refusal audited the same
way (portal.permissions.deny), answered 403 as problem+json."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from portal.permissions import deny


def requires(*perms: str, action: str, any_of: bool = False) -> type[BasePermission]:
    """A permission class: the user needs every one of `perms`, else 403 and an audit event
    naming `action` (as portal.permissions.require does for a page). Unauthenticated
    requests are 401, not audited. `any_of`: one of `perms` is enough (a route whose exact
    permission depends on what the request asks, which a service then checks)."""

    class Requires(BasePermission):
        def has_permission(self, request, view):
            user = request.user
            if not (user and user.is_authenticated):
                return False  # DRF answers 401 with WWW-Authenticate
            allowed = any(map(user.has_perm, perms)) if any_of else user.has_perms(perms)
            if not allowed:
                # DRF checks the rate after the permissions: a refused call is counted here,
                # so that a script cannot fill the audit log with denials at full speed.
                view.check_throttles(request)
                raise deny(request._request, action)
            return True

    Requires.__name__ = f"Requires({', '.join(perms)})"
    return Requires
