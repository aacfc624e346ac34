"""The three roles as Django groups, and what each may do.

Groups are (re)built after every migrate, so a fresh database has them and a new permission
reaches its group without a data migration.
"""

from __future__ import annotations

from audit.actors import ADMINISTRATORS, AUDITORS, HELPDESK, role_of
from composer import kinds

__all__ = ["ADMINISTRATORS", "AUDITORS", "HELPDESK", "ensure_groups", "role_of"]

# Permission codenames per role, as "app_label.codename". Administrators get every permission
# of our apps; the other two get exactly these.
# Helpdesk's: finding desktops, and each operation kind's one-desktop permission
# (composer/kinds/: helpdesk_permission), so a kind helpdesk may run reaches them.
HELPDESK_VIEW_PERMISSIONS = ["pools.view_desktop"]


def helpdesk_permissions() -> list[str]:
    run = {k.helpdesk_permission for k in kinds.all_kinds() if k.helpdesk_permission}
    return HELPDESK_VIEW_PERMISSIONS + sorted(run)


AUDITOR_EXTRA_PERMISSIONS = ["audit.view_audit", "audit.export_audit"]
OUR_APPS = ["pools", "composer", "portal", "audit"]


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
    helpdesk.permissions.set(_lookup(helpdesk_permissions()))

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
