"""Live parts for many watchers: a poll where nothing changed is answered 204 without
rendering; one where something changed sends only what changed, in a few queries and a few
kilobytes, the same at 200 and 2,000 desktops. Speed at 50,000 desktops: bench/pages.py."""

import gzip
import html
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from composer.models import DesktopTask, Operation
from pools.models import Desktop
from pools.states import DesktopState as S
from portal import pool_live_part
from tests.pools.test_pages_scale import add_desktops, inventory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def live_url(page) -> str:
    return html.unescape(re.search(r'id="live"[^>]* hx-get="([^"]+)"', page.text)[1])


def poll(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, headers=HX)
    return response, len(queries)


@pytest.fixture
def watched(client, users, redis_conn):
    """An administrator watching the first page of a pool of 120 desktops (of 200) while an
    operation runs on it."""
    client.force_login(users["admin"])
    world = inventory(users["admin"])
    add_desktops(world, 0, 200)
    # Everything changed a while ago: only what a test changes is new to the next poll.
    hour_ago = timezone.now() - timedelta(hours=1)
    for model in (Desktop, Operation, DesktopTask):
        model.objects.update(updated_at=hour_ago)
    pool = world["pools"][0]
    page = client.get(reverse("pools:detail", args=[pool.pk]))
    return {"client": client, "world": world, "pool": pool, "url": live_url(page), "page": page}


# -- what moves a version ---------------------------------------------------------------------


def test_every_kind_of_write_moves_updated_at(watched):
    """save() with update_fields, QuerySet.update() and bulk_update() all move it: the live
    versions rest on that (pools/stamps.py)."""
    desktop = Desktop.objects.filter(pool=watched["pool"]).first()
    task = DesktopTask.objects.filter(operation=watched["world"]["running"]).first()
    operation = watched["world"]["running"]
    for row in (desktop, task, operation):
        model = type(row)
        before = model.objects.get(pk=row.pk).updated_at
        time.sleep(0.002)
        field = {Desktop: "session_user", DesktopTask: "step", Operation: "error"}[model]
        setattr(row, field, "x")
        row.save(update_fields=[field])
        after_save = model.objects.get(pk=row.pk).updated_at
        time.sleep(0.002)
        model.objects.filter(pk=row.pk).update(**{field: "y"})
        after_update = model.objects.get(pk=row.pk).updated_at
        time.sleep(0.002)
        setattr(row, field, "z")
        model.objects.bulk_update([row], [field])
        after_bulk = model.objects.get(pk=row.pk).updated_at
        assert before < after_save < after_update < after_bulk, model.__name__


# -- the pool page's live part ----------------------------------------------------------------


def test_a_poll_where_nothing_changed_is_204_in_a_few_queries(watched):
    response, queries = poll(watched["client"], watched["url"])
    assert response.status_code == 204 and response.content == b""
    # The session, the user, its permissions, and one query for the version.
    assert queries <= 5


def test_a_poll_sends_only_the_rows_that_changed(watched):
    pool, client = watched["pool"], watched["client"]
    shown = Desktop.objects.filter(pool=pool).order_by("name")
    one, other = shown[3], shown[7]
    time.sleep(0.01)  # after the page's render
    Desktop.objects.filter(pk=one.pk).update(state=S.MAINTENANCE)
    # A task's step changes its row too (the Step column), with no write to the desktop.
    task = DesktopTask.objects.filter(
        operation=watched["world"]["running"], desktop=other
    ).first() or DesktopTask.objects.create(
        operation=watched["world"]["running"], desktop=other, desktop_name=other.name
    )
    DesktopTask.objects.filter(pk=task.pk).update(status="running", step="revert")

    response, queries = poll(client, watched["url"])
    assert response.status_code == 200
    sent = re.findall(rb'<tr id="desktop-(\d+)" hx-swap-oob="true">', response.content)
    assert sorted(int(pk) for pk in sent) == sorted([one.pk, other.pk])
    assert b"<td>revert</td>" in response.content
    assert b'class="state state-maintenance"' in response.content
    # Nothing of the operations list: no operation changed.
    assert b"pool-operations" not in response.content
    assert len(response.content) <= 2048, len(response.content)
    assert queries <= 14, queries


def test_twelve_desktops_in_flight_on_the_page_fit_in_4_kb(watched):
    pool = watched["pool"]
    time.sleep(0.01)
    for desktop in Desktop.objects.filter(pool=pool).order_by("name")[:12]:
        DesktopTask.objects.update_or_create(
            operation=watched["world"]["running"],
            desktop=desktop,
            defaults={"desktop_name": desktop.name, "status": "running", "step": "customize"},
        )
        Desktop.objects.filter(pk=desktop.pk).update(
            state=S.CUSTOMIZING, session_user="", state_changed_at=timezone.now()
        )
    response, _ = poll(watched["client"], watched["url"])
    assert response.content.count(b'hx-swap-oob="true"') == 12
    assert len(response.content) <= 4608, len(response.content)
    # What goes over the wire to a browser, which accepts gzip: well under 4 KB.
    wire = watched["client"].get(watched["url"], headers={**HX, "Accept-Encoding": "gzip"})
    assert wire["Content-Encoding"] == "gzip"
    assert len(wire.content) <= 2048, len(wire.content)
    assert gzip.decompress(wire.content).count(b'hx-swap-oob="true"') == 12


def test_a_deleted_desktop_leaves_the_page(watched):
    pool = watched["pool"]
    gone = Desktop.objects.filter(pool=pool).order_by("name")[5]
    gone_pk = gone.pk
    DesktopTask.objects.filter(desktop=gone).delete()
    gone.disks.all().delete()
    gone.delete()
    # The delete operation's own change moves the version.
    Operation.objects.filter(pk=watched["world"]["running"].pk).update(error="")
    response, _ = poll(watched["client"], watched["url"])
    assert f'<tr id="desktop-{gone_pk}" hx-swap-oob="delete">'.encode() in response.content


def test_a_change_committed_late_shows_at_the_next_time_bucket(watched):
    """A write whose updated_at is older than the last poll (its transaction committed
    late) is not in the next poll's window, but is once the time bucket turns."""
    pool, client, url = watched["pool"], watched["client"], watched["url"]
    late = Desktop.objects.filter(pool=pool).order_by("name")[2]
    long_ago = timezone.now() - timedelta(seconds=10)
    Desktop.objects.filter(pk=late.pk).update(state=S.MAINTENANCE, updated_at=long_ago)
    stale = re.sub(r"v=[0-9a-f]+", "v=old", url)
    stale = re.sub(r"since=[0-9.]+", f"since={time.time():.3f}", stale)
    response, _ = poll(client, stale)
    assert f'id="desktop-{late.pk}"'.encode() not in response.content
    turned = re.sub(r"b=\d+", "b=1", stale)
    response, _ = poll(client, turned)
    assert f'id="desktop-{late.pk}"'.encode() in response.content


def test_when_the_operation_ends_the_last_poll_sends_how_and_stops(watched):
    running = watched["world"]["running"]
    Operation.objects.filter(status__in=Operation.ACTIVE).update(
        status="succeeded", finished_at=timezone.now()
    )
    response, _ = poll(watched["client"], watched["url"])
    assert b"hx-trigger" not in response.content
    assert b'id="pool-operations" class="card" hx-swap-oob="true"' in response.content
    assert f"#{running.pk}</a> ended".encode() in response.content


def settle():
    hour_ago = timezone.now() - timedelta(hours=1)
    for model in (Desktop, Operation, DesktopTask):
        model.objects.update(updated_at=hour_ago)


def test_polls_cost_the_same_at_200_and_2000_desktops(watched):
    client, pool = watched["client"], watched["pool"]

    def costs():
        settle()
        url = live_url(client.get(reverse("pools:detail", args=[pool.pk])))
        unchanged = poll(client, url)
        first = Desktop.objects.filter(pool=pool).order_by("name")[0]
        Desktop.objects.filter(pk=first.pk).update(session_user="someone")
        changed = poll(client, url)
        Operation.objects.filter(pool=pool).update(error="")
        with_operations = poll(client, url)
        assert [r.status_code for r, _ in (unchanged, changed, with_operations)] == [204, 200, 200]
        return [n for _, n in (unchanged, changed, with_operations)]

    small = costs()
    add_desktops(watched["world"], 200, 1800)
    assert Desktop.objects.count() == 2000
    assert costs() == small


@given(st.lists(st.integers(min_value=1, max_value=10**12), max_size=150))
def test_row_ids_survive_their_encoding(ids):
    expected = sorted(set(ids))[: pool_live_part.MAX_ROWS]
    assert pool_live_part.decode_ids(pool_live_part.encode_ids(ids)) == expected


@given(st.text(max_size=300))
def test_hostile_row_ids_are_bounded(raw):
    ids = pool_live_part.decode_ids(raw)
    assert len(ids) <= pool_live_part.MAX_ROWS
    assert all(isinstance(pk, int) and pk > 0 for pk in ids)


def test_a_huge_range_is_cut_to_the_limit():
    assert len(pool_live_part.decode_ids("1-99999999999")) == pool_live_part.MAX_ROWS
    assert pool_live_part.decode_ids("5-3,x,-1,0,7") == [7]


# -- the dashboard ----------------------------------------------------------------------------


def test_dashboard_parts_answer_204_until_something_they_show_changes(watched):
    client = watched["client"]
    full = client.get(reverse("dashboard"))
    urls = {
        part: html.unescape(re.search(rf'hx-get="([^"]*part={part}[^"]*)"', full.text)[1])
        for part in ("activity", "overview")
    }
    for url in urls.values():
        response, queries = poll(client, url)
        assert response.status_code == 204
        assert queries <= 5
    # A worker starting is something the activity part shows (from Redis, not the database).
    from rq import SimpleWorker

    from composer.queue import queue

    q = queue()
    worker = SimpleWorker([q], connection=q.connection, name="live-worker")
    worker.register_birth()
    try:
        response, _ = poll(client, urls["activity"])
        assert response.status_code == 200 and b"live-worker" in response.content
    finally:
        worker.register_death()
    first = Desktop.objects.filter(pool=watched["pool"]).order_by("name")[0]
    Desktop.objects.filter(pk=first.pk).update(state=S.ERROR)
    response, _ = poll(client, urls["overview"])
    assert response.status_code == 200
    assert len(response.content) <= 16 * 1024


def test_the_dashboard_polls_seldom_while_nothing_runs(client, users, redis_conn, settings):
    client.force_login(users["admin"])
    page = client.get(reverse("dashboard"))
    assert f'hx-trigger="every {settings.IDLE_POLL_SECONDS}s"'.encode() in page.content
    assert f'hx-trigger="every {settings.POLL_SECONDS}s"'.encode() not in page.content


# -- the operation page -----------------------------------------------------------------------


def test_the_operation_page_answers_204_until_one_of_its_desktops_changes(watched):
    client, running = watched["client"], watched["world"]["running"]
    page = client.get(reverse("composer:operation", args=[running.pk]))
    url = html.unescape(re.search(r'id="live"[^>]* hx-get="([^"]+)"', page.text)[1])
    response, queries = poll(client, url)
    assert response.status_code == 204 and queries <= 5
    task = running.tasks.order_by("pk").first()
    DesktopTask.objects.filter(pk=task.pk).update(status="running", step="revert")
    response, _ = poll(client, url)
    assert response.status_code == 200 and b"revert" in response.content
