"""Operations as the API reads them: the Operations page's filters, the operation page's
progress counts and time left (composer.progress), and each desktop's row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from composer import progress
from composer.models import Operation
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def estate(users):
    endpoint = f.endpoint()
    ds = f.datastore(endpoint, "ds")
    version = f.version(f.image(endpoint))
    sales, eng = f.pool("Sales", version, [ds]), f.pool("Eng", version, [ds])
    desktops = f.desktops(sales, [f"SAL-{i}" for i in range(4)], ds)
    started = timezone.now() - timedelta(minutes=10)
    running = f.operation(
        sales, users["admin"], "refresh", "running", started_at=started, prepared_at=started
    )
    for desktop, status in zip(
        desktops, ["succeeded", "failed", "running", "pending"], strict=True
    ):
        f.task(running, desktop, status)
    done = f.operation(eng, users["helpdesk"], "power", "succeeded")
    gone = f.operation(sales, users["admin"], "delete", "succeeded")
    Operation.objects.filter(pk=gone.pk).update(pool=None, pool_name="Old")
    return {"running": running, "done": done, "gone": gone, "sales": sales}


def _ids(client, **params) -> list[int]:
    response = client.get("/api/v1/operations/", params)
    assert response.status_code == 200, response.content
    return [o["id"] for o in response.json()["results"]]


def test_operations_newest_first_filtered_as_on_the_page(client, users, estate):
    client.force_login(users["auditor"])
    running, done, gone = estate["running"].pk, estate["done"].pk, estate["gone"].pk
    assert _ids(client) == [gone, done, running]
    assert _ids(client, status="running") == [running]
    assert _ids(client, kind="power") == [done]
    assert _ids(client, pool="Sales") == [running]
    assert _ids(client, pool="Old") == [gone]  # a deleted pool's operations, by name
    assert _ids(client, pool=str(estate["sales"].pk)) == [running]
    assert _ids(client, requested_by="hal") == [done]
    assert _ids(client, requested_by="nobody") == []
    for bad in ({"status": "nope"}, {"kind": "format_c"}):
        response = client.get("/api/v1/operations/", bad)
        assert response.status_code == 400
        assert list(response.json()["errors"]) == list(bad)


def test_an_operation_shows_the_progress_and_eta_of_its_page(client, users, estate):
    client.force_login(users["admin"])
    operation = estate["running"]
    body = client.get(f"/api/v1/operations/{operation.pk}/").json()
    assert body["progress"] == {
        "total": 4,
        "succeeded": 1,
        "failed": 1,
        "halted": 0,
        "finished": 2,
        "running": 1,
        "dispatched": 0,
        "waiting": 0,
        "pending": 1,
        "percent": 50,
        "paused": False,
    }
    # Two desktops worked through in ten minutes, two left: about ten minutes more, as the
    # operation page estimates it (composer.progress.remaining).
    expected = progress.remaining(progress.attach(operation), timezone.now())
    assert abs(body["eta_seconds"] - expected.total_seconds()) < 60
    assert body["plan"] == {} and body["requested_by"] == "ada"
    listed = client.get("/api/v1/operations/", {"status": "running"}).json()["results"][0]
    assert listed["progress"] == body["progress"]
    assert "plan" not in listed
    finished = client.get(f"/api/v1/operations/{estate['done'].pk}/").json()
    assert finished["eta_seconds"] is None and finished["progress"]["total"] == 0


def test_an_operations_desktops_page_by_page(client, users, estate):
    client.force_login(users["admin"])
    url = f"/api/v1/operations/{estate['running'].pk}/desktops/"
    first = client.get(url, {"page_size": 3}).json()
    rest = client.get(first["next"]).json()
    rows = first["results"] + rest["results"]
    assert [(r["desktop_name"], r["status"]) for r in rows] == [
        ("SAL-0", "succeeded"),
        ("SAL-1", "failed"),
        ("SAL-2", "running"),
        ("SAL-3", "pending"),
    ]
    assert rest["next"] is None
    failed = client.get(url, {"status": "failed"}).json()["results"]
    assert [r["desktop_name"] for r in failed] == ["SAL-1"]
    assert client.get("/api/v1/operations/999999/desktops/").status_code == 404


def test_helpdesk_cannot_read_operations(client, users, estate):
    client.force_login(users["helpdesk"])
    for url in (
        "/api/v1/operations/",
        f"/api/v1/operations/{estate['running'].pk}/",
        f"/api/v1/operations/{estate['running'].pk}/desktops/",
    ):
        assert client.get(url).status_code == 403
