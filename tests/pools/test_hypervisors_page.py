"""The Hypervisors page: endpoint settings and last sync, "Test connection" and "Sync inventory
now", who may see and press what, and that a password never reaches the page."""

import pytest
from django.urls import reverse

from composer.drivers.base import ImageRef
from pools.models import HypervisorEndpoint
from portal.models import AuditEvent
from tests.portal.test_security import inline_code

pytestmark = pytest.mark.django_db

PAGE = reverse("pools:hypervisors")
SECRET = "Hunter2-do-not-show-7f3a"


def vsphere_endpoint(**fields):
    """A vCenter endpoint nothing answers for: port 1 on this machine refuses at once."""
    defaults = {
        "name": "vc-lab",
        "driver": "vsphere",
        "address": "127.0.0.1",
        "port": 1,
        "protocol": "http",
        "username": "x",
        "password_env": "SOME_VAR",
    }
    return HypervisorEndpoint.objects.create(**(defaults | fields))


def press(client, button, endpoint):
    """POST one of the row's buttons; the answer is a redirect back to the list with a message."""
    url = reverse(f"pools:hypervisor_{button}", args=[endpoint.pk])
    response = client.post(url, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert response.status_code == 200
    return response, [(m.level_tag, str(m)) for m in response.context["messages"]]


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_list_shows_the_endpoint_with_its_buttons(client, users, lab):
    client.force_login(users["admin"])
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "sim-test" in page and "Simulator" in page
    assert reverse("pools:hypervisor_test", args=[lab.endpoint.pk]) in page
    assert reverse("pools:hypervisor_sync", args=[lab.endpoint.pk]) in page
    assert "csrfmiddlewaretoken" in page
    assert f'href="{PAGE}"' in page  # in the navigation
    row = response.context["endpoints"][0]
    assert (row.datastore_count, row.task_count) == (3, 0)
    assert inline_code(response.content) == []  # the page keeps to the strict CSP


def test_list_shows_vsphere_settings_and_where_the_password_comes_from(
    client, users, lab, monkeypatch
):
    monkeypatch.setenv("SOME_VAR", SECRET)
    vsphere_endpoint(password_file="/run/secrets/vc", verify_tls=False, sync_error="list VMs: boom")
    client.force_login(users["admin"])
    page = client.get(PAGE).content.decode()
    assert "http://127.0.0.1:1" in page
    assert "SOME_VAR" in page and "/run/secrets/vc" in page
    assert "list VMs: boom" in page
    assert SECRET not in page


def test_auditor_sees_the_page_without_buttons(client, users, lab):
    client.force_login(users["auditor"])
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "sim-test" in page
    assert "<button" not in page.split("<main>")[1]  # no action at all, read-only
    assert reverse("pools:hypervisor_test", args=[lab.endpoint.pk]) not in page
    assert reverse("pools:hypervisor_sync", args=[lab.endpoint.pk]) not in page


def test_helpdesk_may_not_see_the_page(client, users, lab):
    client.force_login(users["helpdesk"])
    assert client.get(PAGE).status_code == 403
    assert f'href="{PAGE}"' not in client.get(reverse("helpdesk")).content.decode()


def test_test_connection_on_the_simulator_succeeds_and_is_audited(client, users, lab):
    client.force_login(users["admin"])
    _, shown = press(client, "test", lab.endpoint)
    assert shown == [("success", "sim-test: Connected: 3 datastore(s).")]
    [event] = events("test_connection")
    assert event.outcome == "succeeded" and event.actor_name == users["admin"].username
    assert (event.target_type, event.target_id) == ("hypervisorendpoint", str(lab.endpoint.pk))
    assert event.parameters["message"] == "Connected: 3 datastore(s)."


def test_unreachable_vcenter_is_an_error_message_not_a_500(client, users, lab, monkeypatch):
    monkeypatch.setenv("SOME_VAR", SECRET)
    endpoint = vsphere_endpoint()
    client.force_login(users["admin"])
    response, shown = press(client, "test", endpoint)
    [(level, text)] = shown
    assert level == "error" and "cannot reach" in text
    assert SECRET not in response.content.decode()
    [event] = events("test_connection")
    assert event.outcome == "failed" and "cannot reach" in event.parameters["message"]


def test_missing_password_is_named(client, users, lab, monkeypatch):
    monkeypatch.delenv("SOME_VAR", raising=False)
    endpoint = vsphere_endpoint(name="vc-nopw")
    client.force_login(users["admin"])
    _, shown = press(client, "test", endpoint)
    [(level, text)] = shown
    assert level == "error" and "no password" in text
    assert events("test_connection")[0].outcome == "failed"


@pytest.mark.parametrize("button", ["test", "sync"])
def test_unknown_driver_is_an_error_message(client, users, lab, button):
    endpoint = HypervisorEndpoint.objects.create(name="odd", driver="hyperv")
    client.force_login(users["admin"])
    _, shown = press(client, button, endpoint)
    [(level, text)] = shown
    assert level == "error" and "unknown driver 'hyperv'" in text


def test_sync_on_the_simulator_records_time_and_orphans(client, users, lab):
    # A replica on the hypervisor that no Replica row owns: an orphan.
    lab.sim.clone_replica(ImageRef("gold", "v1", 40 * 1024, 20 * 1024), "ds-a", "replica-lost")
    assert lab.endpoint.synced_at is None
    client.force_login(users["admin"])
    response, shown = press(client, "sync", lab.endpoint)
    [(level, text)] = shown
    assert level == "success" and "3 datastore(s)" in text and "1 orphan VM(s)" in text
    lab.endpoint.refresh_from_db()
    assert lab.endpoint.synced_at is not None and lab.endpoint.sync_error == ""
    assert lab.endpoint.orphans == ["replica-lost"]
    assert "replica-lost" in response.content.decode()
    [event] = events("sync_inventory")
    assert event.outcome == "succeeded" and event.parameters["orphans"] == ["replica-lost"]


def test_failed_sync_is_kept_on_the_endpoint_and_shown(client, users, lab, monkeypatch):
    monkeypatch.setenv("SOME_VAR", SECRET)
    endpoint = vsphere_endpoint()
    client.force_login(users["admin"])
    response, shown = press(client, "sync", endpoint)
    [(level, text)] = shown
    assert level == "error" and "cannot reach" in text
    endpoint.refresh_from_db()
    assert "cannot reach" in endpoint.sync_error and endpoint.synced_at is None
    assert SECRET not in response.content.decode()
    assert events("sync_inventory")[0].outcome == "failed"


@pytest.mark.parametrize("button", ["test", "sync"])
def test_auditor_may_not_press_the_buttons(client, users, lab, button):
    client.force_login(users["auditor"])
    response = client.post(reverse(f"pools:hypervisor_{button}", args=[lab.endpoint.pk]))
    assert response.status_code == 403
    lab.endpoint.refresh_from_db()
    assert lab.endpoint.synced_at is None and lab.endpoint.sync_error == ""
    assert [(e.action, e.outcome) for e in AuditEvent.objects.all()] == [
        ({"test": "test_connection", "sync": "sync_inventory"}[button], "denied")
    ]


def test_the_buttons_answer_only_post(client, users, lab):
    client.force_login(users["admin"])
    for button in ("test", "sync"):
        url = reverse(f"pools:hypervisor_{button}", args=[lab.endpoint.pk])
        assert client.get(url).status_code == 405
    assert not AuditEvent.objects.exists()


def test_admin_edit_link_only_for_staff(client, users, lab):
    client.force_login(users["admin"])
    change = reverse("admin:pools_hypervisorendpoint_change", args=[lab.endpoint.pk])
    assert change not in client.get(PAGE).content.decode()  # the admin would turn them away
    users["admin"].is_staff = True
    users["admin"].save()
    assert change in client.get(PAGE).content.decode()


def test_admin_change_page_groups_the_fields(client, users, lab):
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    response = client.get(reverse("admin:pools_hypervisorendpoint_change", args=[lab.endpoint.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    for legend in ("Connection", "Credentials", "Placement", "Limits", "Last sync"):
        assert legend in page
    assert "never stored in the database" in page
    assert 'name="synced_at"' not in page  # read-only


def test_dashboard_shows_a_hypervisor_it_cannot_read_or_with_orphans(client, users, lab):
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(
        sync_error="list datastores: cannot reach vCenter", orphans=["GHOST-7"]
    )
    client.force_login(users["admin"])
    page = client.get(reverse("dashboard")).content.decode()
    assert "inventory not read: list datastores: cannot reach vCenter" in page
    assert "1 orphan VM (GHOST-7)" in page
    client.force_login(users["helpdesk"])
    assert "GHOST-7" not in client.get(reverse("dashboard")).content.decode()
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(sync_error="", orphans=[])
    client.force_login(users["admin"])
    assert "orphan VM" not in client.get(reverse("dashboard")).content.decode()


def test_operation_form_warns_only_where_sessions_are_unknown(client, users, lab):
    from composer import services

    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Warn",
            naming_pattern="WRN-{n}",
            size=2,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    pool = lab.endpoint.pools.get(name="Warn")
    url = reverse("pools:operate", args=[pool.pk, "refresh"])
    client.force_login(users["admin"])
    assert "does not report who is logged on" not in client.get(url).content.decode()
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(driver="vsphere")
    page = client.get(url).content.decode()
    assert "VMware vSphere (vCenter) does not report who is logged on" in page
