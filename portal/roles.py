"""The three roles as Django groups, and what each may do.

Groups are (re)built after every migrate, so a fresh database has them and a new permission
reaches its group without a data migration.
"""

from __future__ import annotations

ADMINISTRATORS = "Administrators"
HELPDESK = "Helpdesk"
AUDITORS = "Auditors"
# The user the portal acts as when no person asked (composer.services.authorization): its
# parentheses keep it out of any sign-in form's reach.
SYSTEM_USERNAME = "(system)"
SYSTEM_ROLE = "system"

# Permission codenames per role, as "app_label.codename". Administrators get every permission
# of our apps; the other two get exactly these.
HELPDESK_PERMISSIONS = [
    "pools.view_desktop",
    "pools.refresh_desktop",
    "pools.power_desktop",
    "pools.logoff_desktop",
]
AUDITOR_EXTRA_PERMISSIONS = ["portal.view_audit", "portal.export_audit"]
OUR_APPS = ["pools", "composer", "portal"]


def ensure_groups(sender=None, **kwargs):
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    # post_migrate runs app by app; create every app's permissions first so the groups can be
    # complete whatever the order.
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0, using=kwargs.get("using", "default"))

    ours = Permission.objects.filter(content_type__app_label__in=OUR_APPS)
    admins, _ = Group.objects.get_or_create(name=ADMINISTRATORS)
    admins.permissions.set(ours)

    helpdesk, _ = Group.objects.get_or_create(name=HELPDESK)
    helpdesk.permissions.set(_lookup(HELPDESK_PERMISSIONS))

    auditors, _ = Group.objects.get_or_create(name=AUDITORS)
    view_all = ours.filter(codename__startswith="view_")
    auditors.permissions.set(list(view_all) + list(_lookup(AUDITOR_EXTRA_PERMISSIONS)))


def _lookup(names):
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    query = Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(query)


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
