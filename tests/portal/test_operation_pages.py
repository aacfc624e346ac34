"""Maintenance operations through the pages, end to end: the forms, the plan preview, the
operation page and its controls, with real jobs through Redis and the simulated hypervisor."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from composer import eta, services
from composer.models import DesktopTask, Operation
from pools.models import Desktop, Pool, PoolDatastore
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)

Status = Operation.Status


@pytest.fixture
def pool(client, users, lab, run_jobs):
    """A pool of 6 desktops with persistent disks on ds-a and ds-b, created through the form
    and provisioned by the worker."""
    client.force_login(users["admin"])
    response = client.post(
        reverse("pools:create"),
        {
            "name": "Sales",
            "naming_pattern": "SAL-{n:fixed=2}",
            "size": 6,
            "image_version": lab.v1.pk,
            "datastores": [lab.ds["ds-a"].pk, lab.ds["ds-b"].pk],
            "overcommit": 4,
            "power_policy": "always_on",
            "persistent_disk_gb": 1,
            "max_concurrent_provisioning": 8,
            "domain": "corp.example",
        },
    )
    assert response.status_code == 302
    run_jobs()
    created = Pool.objects.get(name="Sales")
    assert Operation.objects.get(pool=created).status == Status.SUCCEEDED
    return created


def operate_url(pool, kind):
    return reverse("pools:operate", args=[pool.pk, kind])


def options(**overrides):
    data = {
        "when": "now",
        "start_at": "",
        "logoff_policy": "wait",
        "warning_message": "",
        "grace_seconds": 300,
    }
    data.update(overrides)
    return data


def desktop(name):
    return Desktop.objects.get(name=name)


def calls(lab, method):
    return sorted(target for name, target in lab.sim.call_log() if name == method)


def test_refresh_of_two_selected_desktops_reverts_only_those(client, users, lab, pool, run_jobs):
    a, b = desktop("SAL-02"), desktop("SAL-05")
    # The selection bar on the pool page sends the ticked desktops to the form.
    form = client.get(operate_url(pool, "refresh"), {"desktop": [a.pk, b.pk], "selection": "1"})
    assert form.status_code == 200
    assert b"SAL-02" in form.content and b"SAL-05" in form.content
    assert b"2 selected desktops" in form.content

    response = client.post(
        operate_url(pool, "refresh"),
        options(desktop=[a.pk, b.pk], selection="True", stop_on_error="on"),
    )
    operation = Operation.objects.get(kind="refresh")
    assert response.status_code == 302
    assert response["Location"] == reverse("composer:operation", args=[operation.pk])
    assert operation.status == Status.QUEUED
    assert operation.stop_on_error is True
    assert sorted(operation.tasks.values_list("desktop_name", flat=True)) == ["SAL-02", "SAL-05"]

    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert calls(lab, "revert") == ["SAL-02", "SAL-05"]
    page = client.get(response["Location"])
    assert b"Succeeded" in page.content
    assert b"hx-trigger" not in page.content
    assert b"stop at the first error" in page.content


def test_rebalance_after_deselecting_a_datastore_vacates_it(client, users, lab, pool, run_jobs):
    ds_a, ds_b = lab.ds["ds-a"], lab.ds["ds-b"]
    leaving = sorted(pool.desktops.filter(datastore=ds_a).values_list("name", flat=True))
    assert leaving  # the pool was spread over both datastores

    settings_url = reverse("pools:pool_datastores", args=[pool.pk])
    assert client.get(settings_url).status_code == 200
    response = client.post(
        settings_url,
        {
            # ds-a deselected (its checkbox absent); ds-b kept; ds-tiny stays unused.
            f"overcommit_{ds_a.pk}": 4,
            f"selected_{ds_b.pk}": "on",
            f"overcommit_{ds_b.pk}": 7,
            f"overcommit_{lab.ds['ds-tiny'].pk}": 4,
        },
    )
    assert response.status_code == 302
    links = {
        link.datastore.name: (link.selected, link.overcommit)
        for link in PoolDatastore.objects.filter(pool=pool).select_related("datastore")
    }
    assert links == {"ds-a": (False, 4), "ds-b": (True, 7)}
    event = AuditEvent.objects.get(action="pool_datastores")
    assert (event.outcome, event.actor_name, event.target_name) == ("succeeded", "ada", "Sales")

    response = client.post(operate_url(pool, "rebalance"), options())
    operation = Operation.objects.get(kind="rebalance")
    assert operation.status == Status.DRAFT
    plan_url = reverse("composer:plan", args=[operation.pk])
    assert response["Location"] == plan_url

    preview = client.get(plan_url)
    assert preview.status_code == 200
    moves = {(m["desktop"], m["from"], m["to"]) for m in preview.context["plan"]["moves"]}
    assert moves == {(name, "ds-a", "ds-b") for name in leaving}
    for name in leaving:
        assert f"{name}</a></td><td>ds-a</td><td>ds-b</td>" in preview.content.decode()
    assert b"Approve and run" in preview.content
    usage = {row["name"]: row for row in preview.context["usage"]}
    assert usage["ds-a"]["after"]["committed_mb"] == 0

    response = client.post(reverse("composer:approve", args=[operation.pk]))
    assert response["Location"] == reverse("composer:operation", args=[operation.pk])
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert not pool.desktops.filter(datastore=ds_a).exists()
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}

    # The plan page of an approved plan shows its status, links to the operation, no buttons.
    done = client.get(plan_url)
    assert b"Approve and run" not in done.content
    assert reverse("composer:operation", args=[operation.pk]).encode() in done.content


def test_datastores_form_adds_a_datastore_and_keeps_at_least_one(client, users, lab, pool):
    url = reverse("pools:pool_datastores", args=[pool.pk])
    tiny = lab.ds["ds-tiny"]
    overcommit = {f"overcommit_{ds.pk}": 4 for ds in lab.ds.values()}
    response = client.post(url, overcommit)  # nothing ticked
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "Select at least one datastore for the pool."
    ]
    assert not AuditEvent.objects.filter(action="pool_datastores").exists()

    ticked = {f"selected_{ds.pk}": "on" for ds in lab.ds.values()}
    response = client.post(url, {**overcommit, **ticked, f"overcommit_{tiny.pk}": 15})
    assert response.status_code == 302
    link = PoolDatastore.objects.get(pool=pool, datastore=tiny)
    assert (link.selected, link.overcommit) == (True, 15)
    event = AuditEvent.objects.get(action="pool_datastores")
    assert event.parameters == {
        "changed": {"ds-tiny": {"selected": True, "overcommit": "Aggressive (15x)"}}
    }


def test_recompose_preview_shows_versions_and_the_run_moves_desktops_to_them(
    client, users, lab, pool, run_jobs
):
    lab.sim.start_session("SAL-03", "alice")
    Desktop.objects.filter(name="SAL-03").update(session_user="alice")
    response = client.post(
        operate_url(pool, "recompose"),
        options(image_version=lab.v2.pk, set_default="on", logoff_policy="force", grace_seconds=0),
    )
    operation = Operation.objects.get(kind="recompose")
    assert response["Location"] == reverse("composer:plan", args=[operation.pk])
    assert operation.options == {"image_version": lab.v2.pk, "set_default": True}

    preview = client.get(response["Location"]).content.decode()
    for name in pool.desktops.values_list("name", flat=True):
        assert f"{name}</a></td>" in preview
    assert preview.count("<td>Win11 @ v1</td><td>Win11 @ v2</td>") == 6
    assert "alice" in preview and "logged off after the warning" in preview
    assert "becomes the pool's default image" in preview

    client.post(reverse("composer:approve", args=[operation.pk]))
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert set(pool.desktops.values_list("image_version", flat=True)) == {lab.v2.pk}
    pool.refresh_from_db()
    assert pool.image_version == lab.v2


def test_plan_preview_flags_a_datastore_at_95_percent_real_use(client, users, lab, pool):
    client.post(operate_url(pool, "rebalance"), options())
    operation = Operation.objects.get(kind="rebalance")
    usage = operation.plan["usage"]["ds-a"]
    usage["real_after_mb"] = usage["capacity_mb"] * 96 // 100
    operation.save(update_fields=["plan"])
    page = client.get(reverse("composer:plan", args=[operation.pk])).content.decode()
    assert page.count('class="warn-cell"') == 1
    assert '(96.0%) <strong class="error">over 95%</strong>' in page


def test_discarding_a_plan_changes_nothing(client, users, lab, pool):
    client.post(operate_url(pool, "recompose"), options(image_version=lab.v2.pk))
    operation = Operation.objects.get(kind="recompose")
    response = client.post(reverse("composer:discard", args=[operation.pk]))
    assert response["Location"] == pool.get_absolute_url()
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLED
    assert set(pool.desktops.values_list("image_version", flat=True)) == {lab.v1.pk}
    # Approving it afterwards is refused with a message, not an error page.
    again = client.post(reverse("composer:approve", args=[operation.pk]), follow=True)
    assert again.status_code == 200
    assert b"This plan is cancelled" in again.content


def test_a_schedule_in_the_past_is_a_form_error(client, users, pool):
    past = timezone.localtime() - timedelta(hours=1)
    response = client.post(
        operate_url(pool, "refresh"),
        options(when="later", start_at=past.strftime("%Y-%m-%dT%H:%M")),
    )
    assert response.status_code == 200
    assert "Must be in the future" in response.context["form"].errors["start_at"][0]
    assert not Operation.objects.filter(kind="refresh").exists()

    missing = client.post(operate_url(pool, "refresh"), options(when="later"))
    assert missing.context["form"].errors["start_at"] == ["Give the date and time to start."]


def test_a_future_schedule_shows_its_time_and_can_be_cancelled(client, users, lab, pool, run_jobs):
    later = timezone.localtime() + timedelta(days=1)
    response = client.post(
        operate_url(pool, "power"),
        options(when="later", start_at=later.strftime("%Y-%m-%dT%H:%M"), action="restart"),
    )
    operation = Operation.objects.get(kind="power")
    assert operation.status == Status.SCHEDULED
    assert operation.options == {"action": "restart"}
    page = client.get(response["Location"]).content.decode()
    assert f"scheduled for {later:%Y-%m-%d %H:%M}" in page
    assert "Cancel&hellip;</a>" in page and "Pause</button>" not in page

    client.post(reverse("composer:cancel", args=[operation.pk]), {"confirmed": "yes"})
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLED


def test_bad_desktop_ids_are_form_errors_not_server_errors(client, users, lab, pool):
    for bad in ("999999", "abc"):
        response = client.post(operate_url(pool, "refresh"), options(desktop=[bad]))
        assert response.status_code == 200
        error = response.context["form"].errors["desktop"][0]
        assert ("No such desktop" in error) if bad.isdigit() else ("Not desktop ids" in error)
        shown = client.get(operate_url(pool, "refresh"), {"desktop": bad})
        assert shown.status_code == 200
        assert b'class="error"' in shown.content
        assert b'type="submit" class="primary"' not in shown.content
    # A ticked-nothing selection is an error too, never the whole pool.
    empty = client.post(operate_url(pool, "delete"), options(selection="True", keep_disks="on"))
    assert empty.status_code == 200
    assert "No desktops selected" in empty.context["form"].errors["desktop"][0]
    assert not Operation.objects.exclude(kind="provision").exists()
    assert client.get(operate_url(pool, "provision")).status_code == 404


def test_desktop_of_another_pool_is_a_form_error(client, users, lab, pool, run_jobs):
    client.post(
        reverse("pools:create"),
        {
            "name": "Other",
            "naming_pattern": "OTH-{n}",
            "size": 1,
            "image_version": lab.v1.pk,
            "datastores": [lab.ds["ds-b"].pk],
            "overcommit": 4,
            "power_policy": "off",
            "persistent_disk_gb": 0,
            "max_concurrent_provisioning": 8,
        },
    )
    stranger = desktop("OTH-1")
    response = client.post(operate_url(pool, "refresh"), options(desktop=[stranger.pk]))
    assert response.status_code == 200
    assert response.context["form"].errors["desktop"] == ["Not in pool Sales: OTH-1."]


def test_cancel_button_on_a_queued_operation_ends_it_cancelled(client, users, lab, pool, run_jobs):
    response = client.post(operate_url(pool, "refresh"), options())
    operation = Operation.objects.get(kind="refresh")
    assert operation.status == Status.QUEUED
    page = client.get(response["Location"]).content.decode()
    assert "Cancel&hellip;</a>" in page and "Resume</button>" not in page

    # Cancel asks first (issue 10, item 5): the button leads to what it will do; a POST
    # without the answer changes nothing.
    cancel = reverse("composer:cancel", args=[operation.pk])
    asked = client.get(cancel).content.decode()
    assert f"Cancel {operation}?" in asked and "This cannot be undone" in asked
    assert "6 desktops not started yet are halted" in asked
    assert 'button type="submit" class="danger">Cancel the operation' in asked
    assert client.post(cancel).status_code == 200
    operation.refresh_from_db()
    assert operation.status == Status.QUEUED

    response = client.post(cancel, {"confirmed": "yes"})
    assert response["Location"] == reverse("composer:operation", args=[operation.pk])
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLED
    run_jobs()  # the queued job finds it cancelled and does nothing
    operation.refresh_from_db()
    assert operation.status == Status.CANCELLED
    assert calls(lab, "revert") == []
    assert set(operation.tasks.values_list("status", flat=True)) == {"halted"}
    page = client.get(reverse("composer:operation", args=[operation.pk])).content.decode()
    assert "Cancel&hellip;</a>" not in page
    # A cancelled operation does not look successful: nothing is done, the bar is red, and
    # the page offers to carry on with the halted desktops.
    assert "0 of 6 desktops done" in page and "6 halted or skipped" in page
    assert 'class="progress outcome-bad"' in page
    carry_on = reverse("pools:operate", args=[pool.pk, "refresh"])
    assert f'href="{carry_on}?desktop=' in page and "Carry on: refresh them" in page
    # And each halted desktop's page says how to carry on with it.
    halted = desktop("SAL-01")
    assert halted.task_halted
    own = client.get(reverse("pools:desktop", args=[halted.pk])).content.decode()
    assert f'href="{carry_on}?desktop={halted.pk}">Carry on: refresh it</a>' in own
    # Cancelling it again is refused with a message.
    again = client.post(cancel, {"confirmed": "yes"}, follow=True)
    assert again.status_code == 200
    assert b"The operation is cancelled" in again.content
    asked_again = client.get(cancel, follow=True)
    assert f"{operation} is cancelled.".encode() in asked_again.content


def test_pause_and_resume_a_running_operation(client, users, lab, pool, run_jobs):
    client.post(operate_url(pool, "refresh"), options())
    operation = Operation.objects.get(kind="refresh")
    run_jobs(max_jobs=1)  # the operation job: it starts and hands desktops to workers
    operation.refresh_from_db()
    assert operation.status == Status.RUNNING
    url = reverse("composer:operation", args=[operation.pk])
    running = client.get(url).content.decode()
    assert "Pause</button>" in running and "Resume</button>" not in running
    assert "Time to finish" in running and "estimating" in running
    # Handed out is not in progress: nobody works on them until a worker takes them
    # (issue 10, item 4); the others say why they wait.
    in_flight = operation.tasks.filter(status="dispatched").count()
    assert in_flight and "in progress" not in running
    assert f"{in_flight} waiting for a worker" in running
    assert running.count(">Waiting for a worker</span>") == in_flight
    if in_flight < 6:
        assert f"{6 - in_flight} not started" in running

    client.post(reverse("composer:pause", args=[operation.pk]))
    operation.refresh_from_db()
    assert operation.status == Status.PAUSED
    paused = client.get(url).content.decode()
    assert "Resume</button>" in paused and "Pause</button>" not in paused
    # Paused reads as paused, not busy (issue 10, item 6).
    assert "6 waiting (paused)" in paused and "waiting for a worker" not in paused
    assert paused.count(">Waiting (paused)</span>") == 6 and ">Dispatched<" not in paused

    client.post(reverse("composer:resume", args=[operation.pk]))
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert calls(lab, "revert") == sorted(pool.desktops.values_list("name", flat=True))


def test_helpdesk_may_refresh_one_desktop_and_nothing_wider(client, users, lab, pool, run_jobs):
    target = desktop("SAL-04")
    client.force_login(users["helpdesk"])
    # Rebalance and the datastores form are administrators' only: 403, recorded.
    assert client.get(operate_url(pool, "rebalance")).status_code == 403
    assert client.post(operate_url(pool, "rebalance"), options()).status_code == 403
    single_rebalance = client.get(operate_url(pool, "rebalance"), {"desktop": target.pk})
    assert single_rebalance.status_code == 403
    settings_url = reverse("pools:pool_datastores", args=[pool.pk])
    assert client.get(settings_url).status_code == 403
    assert client.post(settings_url, {}).status_code == 403
    assert not AuditEvent.objects.filter(action="pool_datastores", outcome="succeeded").exists()
    assert AuditEvent.objects.filter(actor_name="hal", outcome="denied").count() == 5
    # Refresh of two desktops, or of the whole pool, is wider than one desktop.
    two = {"desktop": [target.pk, desktop("SAL-01").pk]}
    assert client.get(operate_url(pool, "refresh"), two).status_code == 403
    assert client.post(operate_url(pool, "refresh"), options(**two)).status_code == 403

    # One desktop, from its page: the form, then the desktop page shows the task.
    page = client.get(target.get_absolute_url())
    assert f"{operate_url(pool, 'refresh')}?desktop={target.pk}".encode() in page.content
    assert client.get(operate_url(pool, "refresh"), {"desktop": target.pk}).status_code == 200
    response = client.post(operate_url(pool, "refresh"), options(desktop=[target.pk]))
    assert response.status_code == 302
    assert response["Location"] == target.get_absolute_url()
    run_jobs()
    operation = Operation.objects.get(kind="refresh")
    assert operation.status == Status.SUCCEEDED
    assert operation.requested_by == users["helpdesk"]
    assert calls(lab, "revert") == ["SAL-04"]


def test_helpdesk_logs_a_user_off_one_desktop(client, users, lab, pool, run_jobs):
    lab.sim.start_session("SAL-06", "carol")
    Desktop.objects.filter(name="SAL-06").update(session_user="carol")
    target = desktop("SAL-06")
    client.force_login(users["helpdesk"])
    form = client.get(operate_url(pool, "logoff"), {"desktop": target.pk})
    assert "logoff_policy" not in form.context["form"].fields  # logging off is the operation
    response = client.post(operate_url(pool, "logoff"), {"desktop": target.pk, "when": "now"})
    assert response["Location"] == target.get_absolute_url()
    run_jobs()
    assert Operation.objects.get(kind="logoff").status == Status.SUCCEEDED
    assert ("log_off", "SAL-06") in lab.sim.call_log()
    target.refresh_from_db()
    assert target.session_user == ""


def test_pool_page_offers_actions_and_selection_only_to_administrators(client, users, pool):
    url = pool.get_absolute_url()
    admin_page = client.get(url).content.decode()
    target = desktop("SAL-01")
    # Checkboxes keep a stable id and hx-preserve, so polling does not wipe a selection.
    assert f'value="{target.pk}" id="pick-{target.pk}" hx-preserve' in admin_page
    assert 'id="desktop-selection"' in admin_page
    assert f'href="{operate_url(pool, "rebalance")}"' in admin_page
    assert "Delete pool" in admin_page
    assert reverse("pools:pool_datastores", args=[pool.pk]) in admin_page

    client.force_login(users["auditor"])
    auditor_page = client.get(url).content.decode()
    assert "pick-" not in auditor_page
    assert operate_url(pool, "refresh") not in auditor_page
    assert client.get(operate_url(pool, "refresh")).status_code == 403


def test_waiting_desktop_shows_why_on_the_operation_page(client, users, lab, pool, run_jobs):
    lab.sim.start_session("SAL-01", "bob")
    Desktop.objects.filter(name="SAL-01").update(session_user="bob", state=DesktopState.CONNECTED)
    client.post(operate_url(pool, "refresh"), options(desktop=[desktop("SAL-01").pk]))
    operation = Operation.objects.get(kind="refresh")
    run_jobs()
    task = DesktopTask.objects.get(operation=operation)
    assert task.status == DesktopTask.Status.WAITING
    page = client.get(reverse("composer:operation", args=[operation.pk])).content.decode()
    assert ">Waiting</span>" in page
    assert f'<span class="waiting">{task.error}' in page


def test_the_estimate_is_the_throughput_so_far_applied_to_the_desktops_left():
    minute = timedelta(minutes=1)
    assert eta.estimate(worked=0, remaining=10, elapsed=5 * minute) is None
    # 65 of 250 after 4.6 minutes: 185 left at that pace, whatever number is in flight.
    assert eta.estimate(worked=65, remaining=185, elapsed=4.6 * minute) == 185 * 4.6 * minute / 65
    assert eta.estimate(worked=4, remaining=8, elapsed=4 * minute) == 8 * minute
    assert eta.estimate(worked=3, remaining=0, elapsed=minute) == timedelta(0)
    assert eta.estimate(worked=3, remaining=2, elapsed=timedelta(0)) is None


def test_the_live_pool_page_ends_with_the_result_and_the_list_up_to_date(
    client, users, lab, pool, run_jobs
):
    """Issue 10, item 7: the last poll of the pool page shows how the operation ended, and
    its "Recent operations" (inside the live part) no longer says Queued."""
    client.post(operate_url(pool, "refresh"), options())
    operation = Operation.objects.get(kind="refresh")
    live = client.get(pool.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in live and 'id="recent-operations"' in live
    assert f'{operation}</a> <span class="status status-queued">Queued</span>' in live
    assert "hx-trigger" in live

    run_jobs()
    last = client.get(pool.get_absolute_url(), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in last  # the last poll
    assert f'{operation}</a> <span class="status status-succeeded">Succeeded</span>' in last
    assert 'class="result result-ok" role="status"' in last
    assert "6 of 6 desktops done." in last


def test_the_form_names_what_it_acts_on_and_irreversible_buttons_look_it(client, pool):
    """Issue 10, item 10: "Delete desktop SAL-04", not "Delete Sales", on a red button."""
    one, two = desktop("SAL-04"), desktop("SAL-05")
    page = client.get(operate_url(pool, "delete"), {"desktop": one.pk, "selection": 1})
    html = page.content.decode()
    assert "<h1>Delete desktop SAL-04</h1>" in html
    assert '<button type="submit" class="danger">Delete desktop SAL-04</button>' in html
    several = client.get(operate_url(pool, "delete"), {"desktop": [one.pk, two.pk]})
    assert b"<h1>Delete 2 desktops of pool Sales</h1>" in several.content
    whole = client.get(operate_url(pool, "delete")).content.decode()
    assert '<button type="submit" class="danger">Delete pool Sales</button>' in whole
    logoff = client.get(operate_url(pool, "logoff"), {"desktop": one.pk}).content.decode()
    assert '<button type="submit" class="danger">Log off desktop SAL-04</button>' in logoff
    refresh = client.get(operate_url(pool, "refresh"), {"desktop": one.pk}).content.decode()
    assert '<button type="submit" class="primary">Refresh desktop SAL-04</button>' in refresh
    nothing = client.get(operate_url(pool, "refresh"), {"selection": 1}).content.decode()
    assert "<h1>Refresh desktops of pool Sales</h1>" in nothing


def test_a_desktop_page_follows_the_operation_working_on_it_not_one_that_skipped_it(
    client, users, pool
):
    """A desktop already in a started operation is skipped by a later one: its page shows the
    task of the operation that has it, not the later operation's skipped task."""
    sal1, sal2 = desktop("SAL-01"), desktop("SAL-02")
    first = services.start_operation(users["admin"], pool, "refresh", [sal1])
    later = services.start_operation(users["admin"], pool, "refresh", [sal1, sal2])
    assert later.tasks.get(desktop=sal1).status == DesktopTask.Status.SKIPPED
    page = client.get(reverse("pools:desktop", args=[sal1.pk]))
    assert page.context["current"].operation == first
    assert page.context["live"]
