"""The three roles' daily work in a browser (issue 10): the helpdesk keeps the desktop it acts
on in sight, the administrator selects in bulk, cancels only after confirming and sees a
cancelled operation for what it is, and unknown addresses get the portal's own page.

Each waits on what it asserts (an operation's final status in the database), never on text
that can appear early.
"""

import pytest

from composer import services
from composer.models import Operation
from composer.reconciler import reconcile
from pools.models import Desktop, Pool
from tests.e2e.browser import finished, login, shot, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_step_seconds():
    return 0.5


@pytest.fixture
def pool(users, lab, worker):
    operation = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Daily",
            naming_pattern="DAY-{n:fixed=2}",
            size=6,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    finished(operation, timeout=180)
    for n, user in ((1, "alice.johnson"), (2, "bob.smith"), (3, "carol.diaz")):
        Desktop.objects.filter(name=f"DAY-0{n}").update(assigned_user=user)
    return Pool.objects.get(name="Daily")


def test_helpdesk_keeps_the_desktop_it_refreshes_on_the_page(
    page, live_server, lab, pool, monkeypatch
):
    """Found by the user logged on, whom the refresh logs off: the row stays, with its live
    state, until the refresh ends (item 1), and says what it waits for."""
    monkeypatch.setattr("portal.helpdesk.GRACE_SECONDS", 2)
    lab.sim.start_session("DAY-04", "dave.jones")
    reconcile()
    login(page, live_server, "hal", "pw-hal")
    page.fill("#helpdesk-q", "dave")
    page.click("button:has-text('Search')")
    row = page.locator("#results tr", has_text="DAY-04")
    row.get_by_role("link", name="Refresh").click()
    page.get_by_role("button", name="Refresh the desktop").click()

    refresh = Operation.objects.get(kind="refresh")
    seen = set()
    while Operation.objects.get(pk=refresh.pk).status not in Operation.FINISHED:
        # The row is there at every moment, whoever is (no longer) logged on.
        assert page.locator("#results tr", has_text="DAY-04").count() == 1
        seen.add(page.locator("#results tr", has_text="DAY-04").inner_text())
        page.wait_for_timeout(300)
    assert finished(refresh).status == "succeeded"
    assert Desktop.objects.get(name="DAY-04").session_user == ""
    assert any("warned; logoff forced after grace" in text for text in seen), seen
    row = page.locator("#results tr", has_text="DAY-04")
    wait_until(page, lambda: row.locator(".state-available").count() == 1, timeout=30)
    assert "(your last action)" in row.inner_text()
    assert "No desktop matches" not in page.content()


def test_admin_selects_in_bulk_and_cancels_only_after_confirming(page, live_server, pool):
    login(page, live_server, "ada", "pw-ada")
    page.goto(f"{live_server.url}{pool.get_absolute_url()}")
    # Select every desktop on the page at once (item 9).
    page.get_by_label("Select every desktop on this page").check()
    assert page.locator("input[name=desktop]:checked").count() == 6
    page.locator("#desktop-selection").get_by_role("button", name="Refresh").click()
    page.wait_for_url("**/operate/refresh/**")
    assert page.locator("h1").inner_text() == "Refresh 6 desktops of pool Daily"
    page.get_by_role("link", name="Go back").click()

    # All the desktops matching a filter, beyond what the page shows (item 9).
    page.fill("#desktop-search", "DAY-0")
    page.locator("form.filters").get_by_role("button", name="Filter").click()
    page.get_by_label("all 6 matching this filter").check()
    page.locator("#desktop-selection").get_by_role("button", name="Delete").click()
    page.wait_for_url("**/operate/delete/**")
    assert "All 6 desktops matching the filter" in page.content()
    danger = page.get_by_role("button", name="Delete 6 desktops of pool Daily")
    assert "danger" in danger.get_attribute("class")  # irreversible, and looks it (item 10)
    page.get_by_role("link", name="Go back").click()

    # Cancel asks first, then the cancelled operation does not look successful (item 5).
    page.goto(f"{live_server.url}/pools/{pool.pk}/operate/refresh/")
    page.get_by_role("button", name="Refresh pool Daily").click()
    page.wait_for_url("**/operations/*/")
    refresh = Operation.objects.get(kind="refresh")
    page.get_by_role("link", name="Cancel…").click()
    assert page.locator("h1").inner_text() == f"Cancel {refresh}?"
    assert "This cannot be undone" in page.content()
    shot(page, "operation-cancel")
    page.get_by_role("button", name="Cancel the operation").click()
    page.wait_for_url(f"**/operations/{refresh.pk}/")
    finished(refresh)
    assert refresh.status == "cancelled"
    page.reload()
    counts = page.locator(".progress-counts").inner_text()
    done = refresh.tasks.filter(status="succeeded").count()
    assert counts.startswith(f"{done} of 6 desktops done")
    assert page.locator("progress.outcome-bad, progress.outcome-mixed").count() == 1
    halted = refresh.tasks.filter(status="halted").count()
    if halted:
        page.get_by_role("link", name="Carry on: refresh").click()
        page.wait_for_url("**/operate/refresh/?desktop=*")
        assert page.locator("h1").inner_text().startswith("Refresh ")


def test_an_unknown_address_is_the_portals_own_page(page, live_server, users):
    login(page, live_server, "ada", "pw-ada")
    response = page.goto(f"{live_server.url}/no-such-page/")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.locator("header .brand").count() == 1  # in the portal's style, signed in
