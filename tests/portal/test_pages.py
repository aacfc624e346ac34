"""Pages: login required, live fragments that poll only while work runs, full loads work."""

import html
import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer.models import Operation
from pools.models import Pool

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def provisioned(client, users, lab):
    """A pool of 4 created through the form, its operation still queued."""
    client.force_login(users["admin"])
    client.post(
        reverse("pools:create"),
        {
            "name": "Lab",
            "naming_pattern": "LAB-{n}",
            "size": 4,
            "image_version": lab.v1.pk,
            "datastores": [lab.ds["ds-a"].pk],
            "overcommit": 4,
            "power_policy": "off",
            "persistent_disk_gb": 0,
            "max_concurrent_provisioning": 8,
        },
    )
    client.logout()
    return Pool.objects.get(name="Lab")


def page_urls(pool):
    operation = Operation.objects.get(pool=pool)
    desktop = pool.desktops.first()
    return [
        reverse("dashboard"),
        reverse("pools:list"),
        reverse("pools:create"),
        reverse("pools:detail", args=[pool.pk]),
        reverse("pools:desktop", args=[desktop.pk]),
        reverse("pools:datastores"),
        reverse("composer:operations"),
        reverse("composer:operation", args=[operation.pk]),
        reverse("audit"),
    ]


def test_every_page_sends_anonymous_users_to_login(client, provisioned):
    for url in page_urls(provisioned):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    assert client.get(reverse("login")).status_code == 200


def test_every_page_renders_as_a_full_load_for_an_administrator(client, users, provisioned):
    client.force_login(users["admin"])
    for url in page_urls(provisioned):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"<html" in response.content, url


def test_pool_page_polls_while_provisioning_and_stops_when_done(
    client, users, provisioned, run_jobs
):
    client.force_login(users["admin"])
    url = reverse("pools:detail", args=[provisioned.pk])
    running = client.get(url)
    assert b'hx-trigger="every 2s"' in running.content
    assert running.content.count(b'class="state state-provisioning"') == 4

    # The live part polls its own address, which carries the version it was rendered at.
    live_url = html.unescape(re.search(r'id="live"[^>]* hx-get="([^"]+)"', running.text)[1])
    assert live_url.startswith(reverse("pools:live", args=[provisioned.pk]) + "?v=")
    unchanged = client.get(live_url, headers={"HX-Request": "true"})
    assert unchanged.status_code == 204 and unchanged.content == b""

    run_jobs()
    done = client.get(live_url, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert b"<html" not in done.content  # only the live section, and the rows that changed
    assert b"hx-trigger" not in done.content
    # Power policy "off": every desktop ready and powered off, its row swapped in place;
    # and the operations part, since the operation changed: how it ended.
    assert done.content.count(b'<tr id="desktop-') == 4
    assert done.content.count(b'hx-swap-oob="true"') == 5
    assert b'id="pool-operations" class="card" hx-swap-oob="true"' in done.content
    assert b"ended" in done.content and b"4 of 4 desktops done" in done.content
    assert done.content.count(b'class="state state-provisioned"') == 4
    assert b'class="state state-provisioning"' not in done.content

    # A page loaded before the live part had its own address polls the page itself.
    legacy = client.get(url, headers={"HX-Request": "true"})
    assert legacy.content.count(b'class="state state-provisioned"') == 4


def test_operation_page_shows_each_desktop_and_stops_polling_at_the_end(
    client, users, provisioned, run_jobs
):
    operation = Operation.objects.get(pool=provisioned)
    url = reverse("composer:operation", args=[operation.pk])
    client.force_login(users["auditor"])
    assert b"hx-trigger" in client.get(url).content
    run_jobs()
    fragment = client.get(url, headers={"HX-Request": "true"})
    assert b"hx-trigger" not in fragment.content
    assert b"Succeeded" in fragment.content
    assert fragment.content.count(b"LAB-") >= 4
    assert b"4 of 4 desktops done" in fragment.content
    assert fragment.content.count(b'class="state state-provisioned"') == 4


def test_audit_page_lists_request_and_outcome_newest_first(client, users, provisioned, run_jobs):
    run_jobs()
    client.force_login(users["auditor"])
    response = client.get(reverse("audit"))
    events = list(response.context["page"])
    assert [(e.action, e.outcome) for e in events[:2]] == [
        ("provision", "succeeded"),
        ("create_pool", "requested"),
    ]
    operation = Operation.objects.get(pool=provisioned)
    assert f'href="/operations/{operation.pk}/"'.encode() in response.content
    assert b"ada" in response.content and b"Administrators" in response.content


def test_helpdesk_cannot_read_the_audit_log_and_the_denial_is_recorded(client, users):
    client.force_login(users["helpdesk"])
    assert client.get(reverse("audit")).status_code == 403
    denial = AuditEvent.objects.get()
    assert (denial.actor_name, denial.action, denial.outcome) == ("hal", "view_audit", "denied")


def test_unknown_pool_is_404_not_500(client, users):
    client.force_login(users["admin"])
    assert client.get("/pools/999999/").status_code == 404
    assert client.get("/pools/?state=<script>").status_code == 200


def test_login_with_demo_style_credentials_reaches_the_dashboard(client, users):
    response = client.post(reverse("login"), {"username": "ada", "password": "pw-ada"})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200
