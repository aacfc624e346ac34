"""Helpdesk may refresh, restart and log off one desktop, now: nothing else, whatever the
route (issue 9, item 6). Through the pool's operate form a helpdesk user once shut a desktop
down and scheduled a refresh for 2099."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer.models import Operation

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(make_pool):
    return make_pool("HD", "HD-{n}", 2)


def post(client, pool, kind, **fields):
    data = {
        "desktop": [pool.desktops.order_by("name").first().pk],
        "selection": "1",
        "when": "now",
        "start_at": "",
        "logoff_policy": "wait",
        "warning_message": "",
        "grace_seconds": 300,
        **fields,
    }
    return client.post(reverse("pools:operate", args=[pool.pk, kind]), data)


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("power", {"action": "shutdown"}),
        ("power", {"action": "start"}),
        ("refresh", {"when": "later", "start_at": "2099-01-01T10:00"}),
        ("power", {"action": "restart", "when": "later", "start_at": "2099-01-01T10:00"}),
    ],
)
def test_helpdesk_may_not_shut_down_start_or_schedule(client, users, pool, kind, fields):
    client.force_login(users["helpdesk"])
    before = Operation.objects.count()
    response = post(client, pool, kind, **fields)
    assert response.status_code == 403
    assert Operation.objects.count() == before
    assert AuditEvent.objects.filter(action=kind, outcome="denied").exists()


@pytest.mark.parametrize("kind, fields", [("refresh", {}), ("power", {"action": "restart"})])
def test_helpdesk_may_refresh_or_restart_one_desktop_now(client, users, pool, kind, fields):
    client.force_login(users["helpdesk"])
    before = Operation.objects.count()
    response = post(client, pool, kind, **fields)
    assert response.status_code == 302
    assert Operation.objects.count() == before + 1


def test_an_administrator_still_may_do_all_of_it(client, users, pool):
    client.force_login(users["admin"])
    assert post(client, pool, "power", action="shutdown").status_code == 302
    refresh = post(client, pool, "refresh", when="later", start_at="2099-01-01T10:00")
    assert refresh.status_code == 302
