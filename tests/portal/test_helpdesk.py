"""The helpdesk page: find a user's desktop, refresh, restart or log it off, watch it live;
and nothing else for helpdesk staff."""

import csv
import io
import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer import services
from composer.models import DesktopTask, Operation
from composer.reconciler import reconcile
from pools.models import Desktop, Pool
from pools.states import DesktopState
from portal.helpdesk import GRACE_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(users, lab, run_jobs):
    """Three provisioned desktops with persistent disks, each assigned to a user."""
    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Support",
            naming_pattern="SUP-{n}",
            size=3,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
            persistent_disk_mb=1024,
        ),
    )
    run_jobs()
    for name, user in (("SUP-1", "alice.martin"), ("SUP-2", "bob.smith"), ("SUP-3", "carol")):
        Desktop.objects.filter(name=name).update(assigned_user=user)
    pool = Pool.objects.get(name="Support")
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
    return pool


@pytest.fixture
def helpdesk(client, users):
    client.force_login(users["helpdesk"])
    return client


def confirm_url(desktop, action, q=""):
    url = reverse("helpdesk_confirm", args=[desktop.pk, action])
    return f"{url}?q={q}" if q else url


def test_search_by_part_of_a_user_name_finds_the_desktop(helpdesk, pool):
    page = helpdesk.get(reverse("helpdesk"), {"q": "MART"})
    assert page.status_code == 200
    assert [d.name for d in page.context["desktops"]] == ["SUP-1"]
    html = page.content.decode()
    assert "alice.martin" in html and "Available" in html
    assert "SUP-2" not in html
    # The three actions, each to its confirmation.
    for action in ("refresh", "restart", "logoff"):
        assert confirm_url(Desktop.objects.get(name="SUP-1"), action, "MART") in html


def test_search_matches_desktop_names_and_the_user_logged_on(helpdesk, pool, lab):
    lab.sim.start_session("SUP-3", "dave.jones")
    reconcile()  # the portal learns about the session
    by_session = helpdesk.get(reverse("helpdesk"), {"q": "jones"})
    assert [d.name for d in by_session.context["desktops"]] == ["SUP-3"]
    assert b"dave.jones" in by_session.content
    by_name = helpdesk.get(reverse("helpdesk"), {"q": "sup-"})
    assert [d.name for d in by_name.context["desktops"]] == ["SUP-1", "SUP-2", "SUP-3"]
    nothing = helpdesk.get(reverse("helpdesk"), {"q": "zed"})
    assert b"No desktop matches" in nothing.content


def test_each_confirmation_says_what_the_user_will_lose(helpdesk, pool):
    desktop = Desktop.objects.get(name="SUP-1")
    refresh = helpdesk.get(confirm_url(desktop, "refresh")).content.decode()
    assert "since its last checkpoint is thrown away" in refresh
    assert "The persistent disk (the user&#x27;s data) is kept" in refresh
    restart = helpdesk.get(confirm_url(desktop, "restart")).content.decode()
    assert "Unsaved work in open applications is lost" in restart
    logoff = helpdesk.get(confirm_url(desktop, "logoff")).content.decode()
    assert "The user&#x27;s session ends" in logoff
    for page in (refresh, restart, logoff):
        assert 'name="message"' in page  # the optional message to the user
    assert helpdesk.get(confirm_url(desktop, "recompose")).status_code == 404


def test_refresh_from_the_helpdesk_page_runs_and_the_desktop_ends_available(
    helpdesk, pool, users, run_jobs
):
    desktop = Desktop.objects.get(name="SUP-2")
    response = helpdesk.post(
        confirm_url(desktop, "refresh"), {"q": "bob", "message": "Fixing your desktop, Bob."}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("helpdesk") + f"?q=bob&watch={desktop.pk}"

    operation = Operation.objects.get(kind="refresh")
    assert operation.requested_by == users["helpdesk"]
    assert [t.desktop_name for t in operation.tasks.all()] == ["SUP-2"]
    assert operation.warning_message == "Fixing your desktop, Bob."
    assert (operation.logoff_policy, operation.grace_seconds) == ("force", GRACE_SECONDS)

    # Progress shows on the same page, which polls while the refresh is under way.
    live = helpdesk.get(response["Location"])
    assert b"Refresh the desktop" not in live.content
    assert b"Refresh: waiting for the operation to start" in live.content
    assert b'hx-trigger="every 2s"' in live.content
    assert b"in progress" in live.content

    run_jobs()
    desktop.refresh_from_db()
    assert desktop.state == DesktopState.AVAILABLE
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    done = helpdesk.get(response["Location"], headers={"HX-Request": "true"})
    assert b"<html" not in done.content and b'id="results"' in done.content
    assert b"hx-trigger" not in done.content  # the last render stops polling
    assert b'class="state state-available"' in done.content


def test_restart_of_a_desktop_in_use_warns_the_user_with_the_message(helpdesk, pool, lab, run_jobs):
    lab.sim.start_session("SUP-1", "alice.martin")
    reconcile()
    desktop = Desktop.objects.get(name="SUP-1")
    page = helpdesk.get(confirm_url(desktop, "restart")).content.decode()
    assert f"and are logged off {GRACE_SECONDS} seconds later" in page

    helpdesk.post(confirm_url(desktop, "restart"), {"message": "Restarting in a minute."})
    operation = Operation.objects.get(kind="power")
    assert operation.options == {"action": "restart"}
    run_jobs()
    # Warned, and waiting out the grace period before the logoff.
    task = DesktopTask.objects.get(operation=operation)
    assert task.status == DesktopTask.Status.WAITING
    assert lab.sim.last_message("SUP-1") == "Restarting in a minute."
    live = helpdesk.get(reverse("helpdesk"), {"q": "alice"})
    assert b"Power (restart): alice.martin warned; logoff forced after grace" in live.content
    assert b"hx-trigger" in live.content


def test_log_off_ends_the_session(helpdesk, pool, lab, run_jobs):
    lab.sim.start_session("SUP-3", "carol")
    reconcile()
    desktop = Desktop.objects.get(name="SUP-3")
    assert desktop.state == DesktopState.CONNECTED
    helpdesk.post(confirm_url(desktop, "logoff"), {"message": ""})
    run_jobs()
    desktop.refresh_from_db()
    assert (desktop.state, desktop.session_user) == (DesktopState.AVAILABLE, "")
    assert lab.sim.get_vm("SUP-3").session_user == ""


def test_the_desktop_acted_on_stays_on_the_page_when_the_search_no_longer_matches_it(
    helpdesk, pool, lab, run_jobs
):
    """Found by the user logged on, who the refresh logs off: the row stays, live, until the
    refresh ends (issue 10, item 1)."""
    lab.sim.start_session("SUP-3", "dave.jones")
    reconcile()
    desktop = Desktop.objects.get(name="SUP-3")
    response = helpdesk.post(confirm_url(desktop, "refresh"), {"q": "dave"})
    back = response["Location"]
    assert back == reverse("helpdesk") + f"?q=dave&watch={desktop.pk}"
    run_jobs()  # warned; the logoff waits out the grace period
    Desktop.objects.filter(pk=desktop.pk).update(session_user="")  # then logged off
    assert helpdesk.get(reverse("helpdesk"), {"q": "dave"}).context["desktops"] == []

    live = helpdesk.get(back)
    assert [d.name for d in live.context["desktops"]] == ["SUP-3"]
    html = live.content.decode()
    assert "(your last action)" in html and 'hx-trigger="every 2s"' in html
    assert "Refresh: dave.jones warned; logoff forced after grace" in html
    # Another search, or a hostile id, shows what matches and nothing else.
    for watch in ("", "x", "-1", "99999999999999999999", "\u0663", str(desktop.pk + 100)):
        page = helpdesk.get(reverse("helpdesk"), {"q": "dave", "watch": watch})
        assert page.status_code == 200 and page.context["desktops"] == [], watch


def test_a_desktop_already_in_an_operation_gets_no_second_one(helpdesk, pool):
    desktop = Desktop.objects.get(name="SUP-1")
    helpdesk.post(confirm_url(desktop, "refresh"), {})
    again = helpdesk.post(confirm_url(desktop, "restart"), {}, follow=True)
    assert b"is already in Refresh Support" in again.content
    assert Operation.objects.count() == 2  # provisioning and the one refresh


def test_helpdesk_sees_only_the_helpdesk(helpdesk, pool):
    response = helpdesk.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("helpdesk")
    page = helpdesk.get(reverse("helpdesk")).content.decode()
    nav = page[page.index("<nav>") : page.index("</nav>")]
    assert reverse("helpdesk") in nav
    for other in ("pools:list", "pools:datastores", "pools:images", "composer:operations"):
        assert reverse(other) not in nav
    assert reverse("audit") not in nav and f'href="{reverse("dashboard")}"' not in nav


def test_helpdesk_cannot_reach_recompose_rebalance_or_pool_settings(helpdesk, pool, users):
    desktop = Desktop.objects.get(name="SUP-1")
    forbidden = [
        reverse("pools:operate", args=[pool.pk, "recompose"]),
        reverse("pools:operate", args=[pool.pk, "rebalance"]),
        reverse("pools:pool_datastores", args=[pool.pk]),
        reverse("pools:detail", args=[pool.pk]),
        reverse("pools:create"),
        reverse("pools:datastores"),
        reverse("pools:images"),
        reverse("composer:operations"),
    ]
    for url in forbidden:
        assert helpdesk.get(url).status_code == 403, url
        assert helpdesk.get(url, {"desktop": desktop.pk}).status_code == 403, url
        assert helpdesk.post(url, {"desktop": [desktop.pk], "when": "now"}).status_code == 403
    # Refresh is theirs for one desktop only, never for the whole pool.
    whole_pool = reverse("pools:operate", args=[pool.pk, "refresh"])
    assert helpdesk.get(whole_pool).status_code == 403
    assert helpdesk.post(whole_pool, {"when": "now", "logoff_policy": "wait"}).status_code == 403
    assert Operation.objects.count() == 1  # only the provisioning
    denied = AuditEvent.objects.filter(actor=users["helpdesk"], outcome="denied")
    assert denied.count() == 3 * len(forbidden) + 2


def test_auditor_can_search_but_not_act(client, users, pool):
    client.force_login(users["auditor"])
    page = client.get(reverse("helpdesk"), {"q": "alice"})
    assert page.status_code == 200 and b"view only" in page.content
    desktop = Desktop.objects.get(name="SUP-1")
    assert client.get(confirm_url(desktop, "refresh")).status_code == 403
    assert client.post(confirm_url(desktop, "refresh"), {}).status_code == 403
    assert Operation.objects.count() == 1
    assert AuditEvent.objects.filter(actor=users["auditor"], outcome="denied").count() == 2


def test_anonymous_users_are_sent_to_login(client, pool):
    desktop = Desktop.objects.get(name="SUP-1")
    for url in (reverse("helpdesk"), confirm_url(desktop, "refresh")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_desktop_being_built_cannot_be_acted_on(helpdesk, pool):
    Desktop.objects.filter(name="SUP-2").update(state=DesktopState.PROVISIONING)
    page = helpdesk.get(reverse("helpdesk"), {"q": "bob"})
    assert b"provisioning&hellip;" in page.content
    assert b'hx-trigger="every 2s"' in page.content  # follows it until it is ready
    desktop = Desktop.objects.get(name="SUP-2")
    assert b"try later" in helpdesk.get(confirm_url(desktop, "refresh")).content
    refused = helpdesk.post(confirm_url(desktop, "refresh"), {}, follow=True)
    assert b"SUP-2 is provisioning: try later." in refused.content
    assert Operation.objects.count() == 1


def test_the_audit_log_names_the_desktop_and_the_message_in_words(
    helpdesk, pool, users, run_jobs, client
):
    """Issue 10, item 8: a helpdesk refresh is logged against the desktop, with the message
    to the user; the page shows labelled details and action names, the CSV a details column."""
    desktop = Desktop.objects.get(name="SUP-2")
    helpdesk.post(confirm_url(desktop, "refresh"), {"q": "bob", "message": "Fixing it, Bob."})
    run_jobs()
    events = AuditEvent.objects.filter(action="refresh").order_by("id")
    assert [e.outcome for e in events] == ["requested", "succeeded"]
    for e in events:
        assert (e.target_type, e.target_id, e.target_name) == ("desktop", str(desktop.pk), "SUP-2")
    requested = events[0]
    assert requested.parameters["warning_message"] == "Fixing it, Bob."
    assert requested.parameters["desktop_names"] == ["SUP-2"]

    client.force_login(users["auditor"])
    page = client.get(reverse("audit"), {"action": "refresh"})
    html = page.content.decode()
    assert "<dt>Message to the user</dt><dd>Fixing it, Bob.</dd>" in html
    assert "<dt>Logoff policy</dt><dd>force</dd>" in html
    assert "{&#x27;" not in html  # no raw dict
    actions = dict(page.context["form"].fields["action"].choices)
    assert actions["refresh"] == "Refresh" and actions["create_pool"] == "Create a pool"
    assert f'href="{desktop.get_absolute_url()}"' in html  # the target links to the desktop

    export = client.get(reverse("audit_export"), {"action": "refresh"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    header, body = rows[0], rows[1:]
    assert header[3:5] == ["action", "action code"] and "details" in header
    requested_row = body[-1]
    assert requested_row[3:5] == ["Refresh", "refresh"]
    assert requested_row[6] == "SUP-2"
    details = json.loads(requested_row[header.index("details")])
    assert details["warning_message"] == "Fixing it, Bob."


def test_a_denial_names_the_action_in_words(helpdesk):
    page = helpdesk.get(reverse("audit"))
    assert page.status_code == 403
    assert b"Your role does not allow you to view the audit log." in page.content
