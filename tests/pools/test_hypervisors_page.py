"""The Hypervisors page: endpoint settings and last sync, "Test connection" and "Sync inventory
now", who may see and press what, and that a password never reaches the page."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from audit.models import AuditEvent
from composer.drivers.base import ImageRef
from composer.models import EndpointCheck
from pools.models import HypervisorEndpoint
from tests.portal.test_security import inline_code

pytestmark = pytest.mark.django_db(transaction=True)  # jobs are enqueued on commit

PAGE = reverse("pools:hypervisors")
SECRET = "Hunter2-do-not-show-7f3a"


def vsphere_endpoint(name="vc-lab", sync_error="", **settings):
    """A vCenter endpoint nothing answers for: port 1 on this machine refuses at once."""
    defaults = {
        "address": "127.0.0.1",
        "port": 1,
        "protocol": "http",
        "username": "x",
        "password_env": "SOME_VAR",
    }
    return HypervisorEndpoint.objects.create(
        name=name, driver="vsphere", settings=defaults | settings, sync_error=sync_error
    )


def press(client, button, endpoint, run_jobs=None):
    """POST one of the row's buttons: the answer is a redirect back to the list saying the
    work is under way. With `run_jobs`, the job then runs, and the list is read again; returns
    (page, the check's status, its message)."""
    url = reverse(f"pools:hypervisor_{button}", args=[endpoint.pk])
    response = client.post(url)
    assert response.status_code == 302
    assert response.url == f"{PAGE}#endpoint-{endpoint.pk}"
    page = client.get(PAGE).content.decode()
    kind = {"test": "Test connection", "sync": "Sync inventory"}[button]
    assert f"{endpoint.name}: {kind.lower()} under way" in page
    assert 'hx-trigger="every' in page  # the page follows the job live
    if run_jobs is None:
        return page
    run_jobs()
    check = EndpointCheck.objects.filter(endpoint=endpoint).latest("id")
    page = client.get(PAGE, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every' not in page  # done: the fragment stops polling
    assert check.get_status_display() in page and escape(check.message) in page
    return page, check.status, check.message


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


def test_test_connection_on_the_simulator_succeeds_and_is_audited(client, users, lab, run_jobs):
    client.force_login(users["admin"])
    _, status, message = press(client, "test", lab.endpoint, run_jobs)
    assert (status, message) == ("succeeded", "Connected: 3 datastore(s).")
    requested, done = events("test_connection")
    assert requested.outcome == "requested" and done.outcome == "succeeded"
    assert done.actor_name == users["admin"].username  # the job writes it for who asked
    assert (done.target_type, done.target_id) == ("hypervisorendpoint", str(lab.endpoint.pk))
    assert done.parameters["message"] == "Connected: 3 datastore(s)."


def test_a_double_click_makes_one_check(client, users, lab, run_jobs):
    client.force_login(users["admin"])
    url = reverse("pools:hypervisor_test", args=[lab.endpoint.pk])
    client.post(url)
    client.post(url)
    assert EndpointCheck.objects.count() == 1
    run_jobs()
    client.post(url)  # once it is done, a new one
    assert EndpointCheck.objects.count() == 2


def test_unreachable_vcenter_is_an_error_message_not_a_500(
    client, users, lab, monkeypatch, run_jobs
):
    monkeypatch.setenv("SOME_VAR", SECRET)
    endpoint = vsphere_endpoint()
    client.force_login(users["admin"])
    page, status, message = press(client, "test", endpoint, run_jobs)
    assert status == "failed" and "cannot reach" in message
    assert SECRET not in page
    assert events("test_connection")[-1].outcome == "failed"
    assert "cannot reach" in events("test_connection")[-1].parameters["message"]


def test_missing_password_is_named(client, users, lab, monkeypatch, run_jobs):
    monkeypatch.delenv("SOME_VAR", raising=False)
    endpoint = vsphere_endpoint(name="vc-nopw")
    client.force_login(users["admin"])
    _, status, message = press(client, "test", endpoint, run_jobs)
    assert status == "failed" and "no password" in message
    assert events("test_connection")[-1].outcome == "failed"


@pytest.mark.parametrize("button", ["test", "sync"])
def test_unknown_driver_is_an_error_message(client, users, lab, button, run_jobs):
    endpoint = HypervisorEndpoint.objects.create(name="odd", driver="hyperv")
    client.force_login(users["admin"])
    _, status, message = press(client, button, endpoint, run_jobs)
    assert status == "failed" and "unknown driver 'hyperv'" in message


def test_sync_on_the_simulator_records_time_and_orphans(client, users, lab, run_jobs):
    # A replica on the hypervisor that no Replica row owns: an orphan.
    lab.sim.clone_replica(ImageRef("gold", "v1", 40 * 1024, 20 * 1024), "ds-a", "replica-lost")
    assert lab.endpoint.synced_at is None
    client.force_login(users["admin"])
    page, status, message = press(client, "sync", lab.endpoint, run_jobs)
    assert status == "succeeded" and "3 datastore(s)" in message and "1 orphan VM(s)" in message
    lab.endpoint.refresh_from_db()
    assert lab.endpoint.synced_at is not None and lab.endpoint.sync_error == ""
    assert lab.endpoint.orphans == ["replica-lost"]
    assert "replica-lost" in page
    done = events("sync_inventory")[-1]
    assert done.outcome == "succeeded" and done.parameters["orphans"] == ["replica-lost"]


def test_failed_sync_is_kept_on_the_endpoint_and_shown(client, users, lab, monkeypatch, run_jobs):
    monkeypatch.setenv("SOME_VAR", SECRET)
    endpoint = vsphere_endpoint()
    client.force_login(users["admin"])
    page, status, message = press(client, "sync", endpoint, run_jobs)
    assert status == "failed" and "cannot reach" in message
    endpoint.refresh_from_db()
    assert "cannot reach" in endpoint.sync_error and endpoint.synced_at is None
    assert SECRET not in page
    assert events("sync_inventory")[-1].outcome == "failed"


def test_a_check_whose_worker_died_is_given_up_by_the_reconciler(client, users, lab):
    from datetime import timedelta

    from django.utils import timezone

    from composer.queue import queue
    from composer.reconciler import reconcile

    client.force_login(users["admin"])
    press(client, "test", lab.endpoint)
    check = EndpointCheck.objects.get()
    queue().empty()  # the job is lost
    EndpointCheck.objects.filter(pk=check.pk).update(
        status="running", requested_at=timezone.now() - timedelta(minutes=5)
    )
    assert reconcile()["checks_given_up"] == 1
    check.refresh_from_db()
    assert check.status == "failed" and "no worker ran it" in check.message


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
    """The driver's settings in the driver's groups (vSphere's), the simulator's none."""
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    endpoint = vsphere_endpoint()
    response = client.get(reverse("admin:pools_hypervisorendpoint_change", args=[endpoint.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    for legend in ("Connection", "Credentials", "Placement", "Limits", "Last sync"):
        assert legend in page
    assert "never stored in the database" in page
    assert 'name="synced_at"' not in page  # read-only
    page = client.get(
        reverse("admin:pools_hypervisorendpoint_change", args=[lab.endpoint.pk])
    ).content.decode()
    assert "Limits" in page and 'name="max_provisioning"' in page
    assert "Credentials" not in page and 'name="address"' not in page


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
