"""Directory sign-in: django-auth-ldap's backend, mapping directory groups to our roles.

Settings come from portal/directory_settings.py (LDAP_* variables); this module is imported
only when directory sign-in is on (AUTHENTICATION_BACKENDS names DirectoryBackend), since it
needs the optional django-auth-ldap.

At every directory sign-in:
- the user's directory groups (nested ones included) give their roles: the Django groups
  Administrators, Helpdesk and Auditors of the directory groups named in the settings, all of
  them when the user is in several (as for a local user in several groups; the audit log
  shows the most powerful, audit.actors.role_of). Other Django groups are left alone.
- a user in none of those groups is refused with a message saying so, and loses the roles a
  former sign-in gave them (so their API tokens lose them too).
- a directory account never takes over a local account that has a usable password (the
  break-glass administrator): that sign-in is refused, and the local password still works.
  A user the directory creates has an unusable local password.

When the directory cannot be answered (down, refused, timed out, the bind account refused),
django-auth-ldap sends ldap_error: the request is marked so the sign-in page says so instead
of "wrong password", and one WARNING line is logged. Local accounts still sign in (ModelBackend
comes after this backend).
"""

from __future__ import annotations

import logging

import ldap
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import MultipleObjectsReturned
from django.dispatch import receiver
from django_auth_ldap.backend import LDAPBackend, ldap_error

from audit.actors import SYSTEM_USERNAME
from portal import security

logger = logging.getLogger(__name__)


def normalized_dn(dn: str) -> str:
    """The form in which two spellings of one DN compare equal (spaces, case)."""
    try:
        return ldap.dn.dn2str(ldap.dn.str2dn(dn)).lower()
    except ldap.DECODING_ERROR:
        return dn.strip().lower()


def roles_for(group_dns) -> set[str]:
    """Our roles given a user's directory group DNs."""
    member_of = {normalized_dn(dn) for dn in group_dns}
    return {
        role for role, dn in settings.LDAP_ROLE_GROUPS.items() if normalized_dn(dn) in member_of
    }


def set_roles(user, roles: set[str]) -> None:
    """Make the user's role groups exactly `roles`, leaving their other groups alone."""
    role_groups = Group.objects.filter(name__in=settings.LDAP_ROLE_GROUPS.keys())
    user.groups.remove(*[g for g in role_groups if g.name not in roles])
    user.groups.add(*[g for g in role_groups if g.name in roles])


class DirectoryBackend(LDAPBackend):
    """Django builds a new backend for every authenticate() call, so `request` is this
    sign-in's own."""

    request = None

    def authenticate(self, request, username=None, password=None, **kwargs):
        self.request = request
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_or_build_user(self, username, ldap_user):
        """Called once the directory has accepted the password, before anything is saved."""
        try:
            user, built = super().get_or_build_user(username, ldap_user)
        except MultipleObjectsReturned:  # local names differing only in case ("Ann", "ann")
            logger.warning(
                "Directory account %r not signed in: several local accounts have "
                "that name in some case.",
                username,
            )
            raise ldap_user.AuthenticationFailed("several local accounts have that name") from None
        if not built and (user.has_usable_password() or user.get_username() == SYSTEM_USERNAME):
            logger.warning(
                "Directory account %r not signed in: a local account %r with its own password "
                "exists, and the directory never takes one over.",
                username,
                user.get_username(),
            )
            raise ldap_user.AuthenticationFailed("a local account has that name")
        # The role-group requirement is checked here rather than with AUTH_LDAP_REQUIRE_GROUP
        # (an OR of the three groups), whose refusal is silent: here the page can say why,
        # and a returning user's old roles can be taken away.
        if not roles_for(ldap_user.group_dns):
            if not built:
                set_roles(user, set())
            security.mark_sign_in_problem(self.request, security.NOT_IN_A_ROLE_GROUP)
            raise ldap_user.AuthenticationFailed("in none of the portal's role groups")
        return user, built

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            set_roles(user, roles_for(ldap_user.group_dns))
        return user


# django-auth-ldap logs its own WARNING with the exception's whole dictionary; settings.py
# quiets that logger so that this is the one line an operator reads.
@receiver(ldap_error, dispatch_uid="portal.directory.directory_unreachable")
def directory_unreachable(sender, context, user=None, request=None, exception=None, **kwargs):
    details = exception.args[0] if exception is not None and exception.args else {}
    if isinstance(details, dict):
        reason = "; ".join(str(details[key]) for key in ("desc", "info") if details.get(key))
    else:
        reason = str(details)
    logger.warning(
        "Directory sign-in unavailable (%s, %s): %s: %s",
        settings.AUTH_LDAP_SERVER_URI,
        context,
        type(exception).__name__,
        reason or "no details",
    )
    security.mark_sign_in_problem(request, security.DIRECTORY_UNREACHABLE)
