"""An administrator creates a pool, watches it provision live, refreshes two desktops."""

import pytest

from composer.models import Operation
from pools.models import Desktop
from tests.e2e.browser import login, shot, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_creates_pool_watches_it_provision_and_refreshes_two(
    page, live_server, users, lab, worker
):
    login(page, live_server, "ada", "pw-ada")
    page.click("nav >> text=Pools")
    page.click("text=New pool")
    page.fill("#id_name", "Finance")
    page.fill("#id_naming_pattern", "FIN-{n:fixed=2}")
    page.fill("#id_size", "6")
    page.check("text=ds-a")
    page.check("text=ds-b")
    page.fill("#id_persistent_disk_gb", "1")
    shot(page, "pool-create")
    page.click("text=Create and provision")

    # The pool page: desktops go Provisioning -> Customizing -> Available with no reload.
    page.wait_for_url("**/pools/*/")
    # A marker element added now survives only if the page is never reloaded.
    page.locator("h1").evaluate("h => h.setAttribute('data-same-document', 'yes')")
    page.wait_for_selector(".state-customizing, .state-available", timeout=60_000)
    shot(page, "pool-provisioning")
    # The rows change in place, swapped out of band by the live part's polls.
    wait_until(page, lambda: page.locator("table.desktops .state-available").count() == 6)
    assert page.locator("h1[data-same-document=yes]").count() == 1
    assert Desktop.objects.filter(state="available").count() == 6
    shot(page, "pool-detail")

    # Refresh two selected desktops.
    page.check("[aria-label='Select FIN-02']")
    page.check("[aria-label='Select FIN-05']")
    page.click("#desktop-selection >> button:has-text('Refresh')")
    page.wait_for_url("**/operate/refresh/**")
    assert page.locator("text=FIN-02").count() and page.locator("text=FIN-05").count()
    shot(page, "operation-form")
    page.click("button.primary")
    page.wait_for_url("**/operations/*/")
    # Wait on what is asserted, the operation's final status: a desktop row shows
    # "Succeeded" before the operation ends.
    refresh = Operation.objects.get(kind="refresh")
    wait_until(page, lambda: Operation.objects.get(pk=refresh.pk).status in Operation.FINISHED)
    refresh.refresh_from_db()
    assert refresh.status == "succeeded"
    # ...and the page shows it without a reload once the operation has ended.
    page.wait_for_selector("dd .status-succeeded", timeout=60_000)
    shot(page, "operation-detail")
    assert sorted(refresh.tasks.values_list("desktop_name", flat=True)) == ["FIN-02", "FIN-05"]
    assert sorted(t for m, t in lab.sim.call_log() if m == "revert") == ["FIN-02", "FIN-05"]

    page.click("nav >> text=Dashboard")
    assert page.locator("text=Finance").count() >= 1
    shot(page, "dashboard")
