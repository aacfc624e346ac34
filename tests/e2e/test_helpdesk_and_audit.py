"""Helpdesk refreshes a user's desktop found by part of the user name and watches it live;
an auditor then finds that refresh in the audit log and exports it."""

import csv
import io

import pytest

from composer import services
from composer.models import Operation
from pools.models import Desktop, Pool
from tests.e2e.browser import finished, login, shot, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_step_seconds():
    # Slow enough that Maintenance lasts longer than one poll of the page (2 s).
    return 1.5


@pytest.fixture
def pool_with_users(users, lab, worker):
    operation = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Support",
            naming_pattern="SUP-{n:fixed=2}",
            size=3,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    finished(operation)
    Desktop.objects.filter(name="SUP-02").update(assigned_user="alice.johnson")
    Desktop.objects.filter(name="SUP-03").update(assigned_user="bob.smith")
    return Pool.objects.get(name="Support")


def test_helpdesk_refreshes_and_auditor_reviews(page, live_server, users, lab, pool_with_users):
    # Helpdesk: only the helpdesk page, search by part of the user name.
    login(page, live_server, "hal", "pw-hal")
    nav = page.locator("header nav").inner_text()
    assert "Helpdesk" in nav
    for hidden in ("Pools", "Datastores", "Operations", "Audit log"):
        assert hidden not in nav
    page.fill("#helpdesk-q", "JOHN")
    page.click("button:has-text('Search')")
    row = page.locator("#results tr", has_text="SUP-02")
    assert row.count() == 1 and "alice.johnson" in row.inner_text()
    assert page.locator("#results tr", has_text="SUP-03").count() == 0
    shot(page, "helpdesk-search")

    row.locator("a:has-text('Refresh')").click()
    assert "written since" in page.content() or "lose" in page.content()
    page.fill("textarea[name=message], input[name=message]", "Fixing your desktop now")
    shot(page, "helpdesk-confirm")
    page.click("form button.primary")

    # Back on the search results: Maintenance, then Available, without reloading.
    page.locator("h1").evaluate("h => h.setAttribute('data-same-document', 'yes')")
    row = page.locator("#results tr", has_text="SUP-02")
    wait_until(page, lambda: row.locator(".state-maintenance").count() == 1, timeout=60)
    shot(page, "helpdesk-progress")
    wait_until(page, lambda: row.locator(".state-available").count() == 1, timeout=60)
    assert page.locator("h1[data-same-document=yes]").count() == 1
    refresh = Operation.objects.get(kind="refresh")
    assert refresh.status == "succeeded" and refresh.requested_by == users["helpdesk"]

    # No way to recompose, rebalance or change the pool.
    pool = pool_with_users
    for path in (
        f"/pools/{pool.pk}/operate/recompose/",
        f"/pools/{pool.pk}/operate/rebalance/",
        f"/pools/{pool.pk}/datastores/",
        f"/pools/{pool.pk}/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, path

    # Auditor: filter the log to that refresh, see who did it and how it ended, export CSV.
    page.context.clear_cookies()
    login(page, live_server, "aud", "pw-aud")
    page.click("nav >> text=Audit log")
    page.fill("input[name=who]", "hal")
    page.select_option("select[name=action]", "refresh")
    page.click("button:has-text('Filter')")
    rows = page.locator("table tbody tr")
    text = rows.all_inner_texts()
    assert text and all("hal" in r and "Refresh" in r for r in text)
    assert any("Succeeded" in r for r in text) and any("Requested" in r for r in text)
    shot(page, "audit-log")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    data = download.value.path().read_text()
    exported = list(csv.reader(io.StringIO(data)))
    body = exported[1:]
    assert len(body) == len(text)
    assert all("hal" in line and "refresh" in line for line in body)
