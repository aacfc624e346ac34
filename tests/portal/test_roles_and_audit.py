import pytest
from django.contrib.auth.models import Group, User

from audit.log import record
from audit.models import AuditEvent
from portal.roles import ADMINISTRATORS, AUDITORS, HELPDESK, role_of

pytestmark = pytest.mark.django_db


def perms(group_name):
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_migrate_creates_the_three_groups_with_their_permissions():
    admins, helpdesk, auditors = perms(ADMINISTRATORS), perms(HELPDESK), perms(AUDITORS)
    assert {"pools.add_pool", "pools.run_maintenance", "audit.view_audit"} <= admins
    assert helpdesk == {
        "pools.view_desktop",
        "pools.refresh_desktop",
        "pools.power_desktop",
        "pools.logoff_desktop",
    }
    assert {"pools.view_pool", "pools.view_desktop", "audit.view_audit"} <= auditors
    # Auditors read everything and change nothing; they may also export the audit log.
    assert "audit.export_audit" in auditors and "audit.export_audit" in admins
    assert not [
        p for p in auditors - {"audit.export_audit"} if not p.split(".")[1].startswith("view_")
    ]


def test_groups_are_rebuilt_safely_when_migrate_runs_again():
    from django.core.management import call_command

    Group.objects.get(name=HELPDESK).permissions.clear()
    call_command("migrate", verbosity=0)
    assert "pools.refresh_desktop" in perms(HELPDESK)
    assert Group.objects.filter(name=HELPDESK).count() == 1


def test_role_is_the_most_powerful_group():
    user = User.objects.create_user("both")
    user.groups.add(Group.objects.get(name=AUDITORS), Group.objects.get(name=ADMINISTRATORS))
    assert role_of(user) == ADMINISTRATORS
    assert role_of(User.objects.create_user("nobody")) == "none"


def test_audit_events_cannot_be_changed_or_deleted():
    user = User.objects.create_user("ada")
    event = record(actor=user, action="create_pool", outcome="requested")
    assert (event.actor_name, event.role) == ("ada", "none")
    event.outcome = "succeeded"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).outcome == "requested"


def test_audit_admin_is_read_only_even_for_superusers(client):
    admin = User.objects.create_superuser("root", password="x")
    user = User.objects.create_user("ada")
    event = record(actor=user, action="create_pool", outcome="requested")
    client.force_login(admin)
    assert client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    response = client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
