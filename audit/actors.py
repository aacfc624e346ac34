"""Who the audit log says acted: the role names, the system actor's name, and role_of()."""

from __future__ import annotations

ADMINISTRATORS = "Administrators"
HELPDESK = "Helpdesk"
AUDITORS = "Auditors"
# The user the portal acts as when no person asked (composer.services.authorization): its
# parentheses keep it out of any sign-in form's reach.
SYSTEM_USERNAME = "(system)"
SYSTEM_ROLE = "system"


def role_of(user) -> str:
    """The role shown in the audit log: the user's most powerful group."""
    if user is None or not user.is_authenticated:
        return "anonymous"
    if user.get_username() == SYSTEM_USERNAME:
        return SYSTEM_ROLE
    names = {g.name for g in user.groups.all()}
    for role in (ADMINISTRATORS, HELPDESK, AUDITORS):
        if role in names:
            return role
    return "superuser" if user.is_superuser else "none"
