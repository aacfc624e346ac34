"""The dashboard: desktops by state per pool with problems first, datastore use with the 95%
warning, operations with progress and estimated finish, workers and queue, recent failures;
live by htmx and complete without it."""

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pools.models import Datastore, Desktop, PoolDatastore
from pools.states import DesktopState as S
from portal.dashboard import pool_summaries
from tests import factories
from tests.factories import GIB

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(users, redis_conn):
    """Two pools: Calm has only ready desktops; Trouble has one of each problem."""
    endpoint = factories.endpoint("dash")
    roomy = factories.datastore(endpoint, "ds-roomy", 1000 * GIB, free_mb=800 * GIB)
    full = factories.datastore(endpoint, "ds-full", 100 * GIB, free_mb=3 * GIB)
    version = factories.version(factories.image(endpoint), disk_mb=10 * GIB, used_mb=5 * GIB)
    pools = {
        "Calm": factories.pool("Calm", version, [roomy], size=4),
        "Trouble": factories.pool("Trouble", version, [full], size=4),
    }
    now = timezone.now()

    def desktop(pool, name, datastore, state=S.AVAILABLE, minutes=0, **extra):
        return factories.desktop(
            pools[pool],
            name,
            datastore,
            state=state,
            state_changed_at=now - timedelta(minutes=minutes),
            **extra,
        )

    for i in range(1, 5):
        desktop("Calm", f"CAL-{i}", roomy)
    desktop("Trouble", "TRO-1", full, S.ERROR, 5, reason="customize: guest did not answer")
    desktop("Trouble", "TRO-2", full, missing=True)
    desktop("Trouble", "TRO-3", full, S.MAINTENANCE, 90)  # stuck: over an hour
    desktop("Trouble", "TRO-4", full, S.CUSTOMIZING, 40)  # stuck: no operation holds it
    held = desktop("Trouble", "TRO-5", full, S.CUSTOMIZING, 40)  # busy, but held: not stuck
    desktop("Trouble", "TRO-6", full, S.MAINTENANCE, 10)  # busy a short while: fine
    operation = factories.operation(
        pools["Trouble"],
        users["admin"],
        kind="provision",
        started_at=now - timedelta(minutes=50),
        prepared_at=now - timedelta(minutes=50),
    )
    factories.task(operation, held, "running")
    for i, desk in enumerate(Desktop.objects.filter(pool=pools["Calm"])):
        start = now - timedelta(minutes=30)
        factories.task(
            operation,
            desk,
            "succeeded",
            started_at=start,
            finished_at=start + timedelta(minutes=10 + i),
        )
    return {"pools": pools, "running": operation, "now": now, "full": full, "roomy": roomy}


def test_pools_list_problems_first_with_error_missing_and_stuck_counted(world):
    summaries = pool_summaries()
    trouble = next(s for s in summaries if s.pool.name == "Trouble")
    assert [s.pool.name for s in summaries] == ["Trouble", "Calm"]
    assert (trouble.error, trouble.missing, trouble.stuck) == (1, 1, 2)
    assert (trouble.total, trouble.busy, trouble.ready) == (6, 4, 1)


def test_dashboard_draws_each_pools_states_as_an_svg_bar_without_inline_styles(
    client, users, world
):
    client.force_login(users["admin"])
    html = client.get(reverse("dashboard")).content.decode()
    assert "style=" not in html and "<script>" not in html
    # Calm: 4 available desktops fill the bar; Trouble: 6 desktops in 5 states.
    bars = re.findall(r'<svg class="statebar".*?</svg>', html, re.S)
    assert len(bars) == 2
    trouble, calm = bars  # problems first
    assert '<rect class="seg seg-available" x="0.000" y="0" width="100.000"' in calm
    widths = re.findall(r'class="seg seg-(\w+)" x="[\d.]+" y="0" width="([\d.]+)"', trouble)
    widths = [(state, width) for state, width in widths if state != "empty"]
    assert dict(widths) == {
        "available": "16.667",
        "customizing": "33.333",
        "maintenance": "33.333",
        "error": "16.667",
    }
    assert "Error: 1</title>" in trouble
    assert html.index("Trouble") < html.index("Calm")


def test_problem_desktops_are_listed_with_why(client, users, world):
    client.force_login(users["admin"])
    response = client.get(reverse("dashboard"))
    problems = {d.name for d in response.context["problem_desktops"]}
    assert problems == {"TRO-1", "TRO-2", "TRO-3", "TRO-4"}
    html = response.content.decode()
    assert "customize: guest did not answer" in html
    assert "The VM is gone from the hypervisor." in html
    totals = response.context["totals"]
    assert (totals.desktops, totals.error, totals.missing, totals.stuck) == (10, 1, 1, 2)
    # The counters link to the pool page filtered to them.
    trouble = world["pools"]["Trouble"]
    assert f"{trouble.get_absolute_url()}?flag=stuck" in html
    assert f"{trouble.get_absolute_url()}?state=error" in html


def test_datastores_show_real_and_overcommit_use_with_the_95_percent_warning(client, users, world):
    client.force_login(users["admin"])
    response = client.get(reverse("dashboard"))
    usage = {u.datastore.name: u for u in response.context["datastores"]}
    full, roomy = usage["ds-full"], usage["ds-roomy"]
    assert round(full.used_percent) == 97 and full.warn
    assert not roomy.warn
    # 6 clones of a 10 GiB parent against 100 GiB x 4.
    assert (full.committed_mb, full.limit_mb) == (60 * GIB, 400 * GIB)
    assert round(full.committed_percent) == 15 and not full.committed_warn
    html = response.content.decode()
    assert html.count("over 95%") == 1
    assert (
        '<meter class="gauge" min="0" max="102400" value="99328" low="97280" high="97280"' in html
    )


def test_overcommit_warning_uses_the_strictest_level_of_the_pools_on_it(world):
    from pools.usage import datastore_usage

    Datastore.objects.filter(pk=world["roomy"].pk).update(capacity_mb=10 * GIB)
    PoolDatastore.objects.filter(datastore=world["roomy"]).update(overcommit=4)
    (roomy,) = [u for u in datastore_usage() if u.datastore.name == "ds-roomy"]
    assert (roomy.factor, roomy.committed_mb) == (4, 40 * GIB)
    assert roomy.committed_percent == 100 and roomy.committed_warn


def test_running_operation_shows_progress_and_estimated_finish(client, users, world):
    client.force_login(users["admin"])
    response = client.get(reverse("dashboard"))
    (running,) = response.context["running_operations"]
    assert (running.progress.done, running.progress.total, running.progress.in_flight) == (4, 5, 1)
    # 4 desktops worked through in the 50 minutes since it started, one left: 12.5 minutes
    # at that throughput (not the 11.5 minutes one desktop took on average).
    assert abs(running.remaining - timedelta(minutes=12, seconds=30)) < timedelta(seconds=5)
    html = response.content.decode()
    assert "about 12m 30s left, done by" in html
    assert '<progress class="progress outcome-ok" value="80" max="100"' in html


def test_scheduled_operations_and_recent_failures(client, users, world):
    now = world["now"]
    calm = world["pools"]["Calm"]
    scheduled = factories.operation(
        calm, users["admin"], status="scheduled", scheduled_for=now + timedelta(hours=3)
    )
    for status, hours in (("failed", 2), ("partially_failed", 5), ("failed", 30)):
        factories.operation(
            calm,
            users["admin"],
            kind="recompose",
            status=status,
            finished_at=now - timedelta(hours=hours),
        )
    client.force_login(users["auditor"])
    response = client.get(reverse("dashboard"))
    assert response.context["scheduled_operations"] == [scheduled]
    failed = response.context["failed_operations"]
    assert [op.status for op in failed] == ["failed", "partially_failed"]  # not the old one
    assert b"No operation failed" not in response.content


def test_a_stalled_queue_is_red_when_no_worker_is_alive(client, users, world):
    from composer.queue import queue

    queue().enqueue("builtins.print", "nobody will run me")
    client.force_login(users["admin"])
    response = client.get(reverse("dashboard"))
    workers = response.context["workers"]
    assert (workers["count"], workers["queued"], workers["stalled"]) == (0, 1, True)
    assert b"No worker alive and 1 job queued" in response.content
    assert b'class="alert"' in response.content


def test_a_live_worker_is_listed(client, users, world):
    from rq import SimpleWorker

    from composer.queue import queue

    q = queue()
    worker = SimpleWorker([q], connection=q.connection, name="dash-worker")
    worker.register_birth()
    try:
        client.force_login(users["admin"])
        workers = client.get(reverse("dashboard")).context["workers"]
        assert workers["count"] == 1 and workers["alive"] == 1 and not workers["stalled"]
        assert workers["rows"][0]["name"] == "dash-worker"
    finally:
        worker.register_death()


def test_counts_refresh_live_and_the_page_works_without_javascript(client, users, world):
    client.force_login(users["admin"])
    full = client.get(reverse("dashboard"))
    assert b"<html" in full.content and b'id="live"' in full.content
    assert b'hx-trigger="every 2s"' in full.content
    assert b'id="overview"' in full.content
    # Each part polls with the version it was rendered at: 204 while nothing changed.
    for part in ("activity", "overview"):
        url = html.unescape(re.search(rf'hx-get="([^"]*part={part}[^"]*)"', full.text)[1])
        assert client.get(url, headers={"HX-Request": "true"}).status_code == 204
    activity = html.unescape(re.search(r'hx-get="([^"]*part=activity[^"]*)"', full.text)[1])
    Desktop.objects.filter(name="CAL-1").update(state=S.ERROR, reason="went wrong")
    fragment = client.get(activity, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert fragment.content.lstrip().startswith(b'<div id="live"')
    # An operation runs in this world: it keeps refreshing every POLL_SECONDS.
    assert b'hx-trigger="every 2s"' in fragment.content
    assert b"desktops</li>" in fragment.content and b'id="overview"' not in fragment.content


def test_each_role_sees_only_its_sections(client, users, world):
    client.force_login(users["auditor"])
    context = client.get(reverse("dashboard")).context
    assert context["pools"] and context["datastores"] and "workers" in context
    client.force_login(users["helpdesk"])
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("helpdesk")
