"""POST /api/v1/pools/<id>/resize/: a script grows and shrinks a pool through the pool page's
service, and hears why when it cannot."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from composer.models import Operation
from pools.models import Desktop, PersistentDisk
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(users, lab, run_jobs):
    made = factories.requested_pool(
        users["admin"], lab, "Api", "API-{n:fixed=2}", 3, persistent_disk_mb=1024
    )
    run_jobs()
    return made


def url(pool) -> str:
    return f"/api/v1/pools/{pool.pk}/resize/"


def assert_problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


def test_grow_then_shrink_end_to_end(api, pool, run_jobs):
    grown = api["admin"].post(url(pool), {"size": 5}, key="grow-1")

    assert grown.status_code == 201, grown.content
    body = grown.json()
    assert body["pool"]["size"] == 5
    assert body["operation"]["kind"] == "provision"
    assert sorted(t["desktop_name"] for t in body["operation"]["tasks"]) == ["API-04", "API-05"]
    # The same key again: the first answer, not a second growth.
    again = api["admin"].post(url(pool), {"size": 5}, key="grow-1")
    assert again.json() == body
    run_jobs()
    assert Operation.objects.get(pk=body["operation"]["id"]).status == "succeeded"
    assert pool.desktops.count() == 5

    Desktop.objects.filter(pool=pool, name="API-05").update(assigned_user="alice")
    shrunk = api["admin"].post(url(pool), {"size": 3})

    assert shrunk.status_code == 201, shrunk.content
    operation = shrunk.json()["operation"]
    assert operation["kind"] == "delete"
    assert sorted(t["desktop_name"] for t in operation["tasks"]) == ["API-03", "API-04"]
    run_jobs()
    assert sorted(pool.desktops.values_list("name", flat=True)) == ["API-01", "API-02", "API-05"]
    assert PersistentDisk.objects.filter(name__in=["API-03-pd", "API-04-pd"]).count() == 2

    unchanged = api["admin"].post(url(pool), {"size": 3})
    assert unchanged.status_code == 200
    assert unchanged.json()["operation"] is None
    assert AuditEvent.objects.filter(action="resize_pool").count() == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"size": 0}, {"size": -3}, {"size": "many"}, {"size": True}, {"size": 10**30}, []],
)
def test_bad_sizes_are_400(api, pool, body):
    problem = assert_problem(api["admin"].post(url(pool), body), 400)

    assert problem["errors"]
    assert pool.desktops.count() == 3


def test_a_size_the_datastores_cannot_take_is_400_naming_the_shortfall(api, pool):
    problem = assert_problem(api["admin"].post(url(pool), {"size": 4000}), 400)

    assert "do not fit" in problem["errors"]["size"][0]
    pool.refresh_from_db()
    assert (pool.size, pool.desktops.count()) == (3, 3)


def test_too_few_safe_desktops_to_remove_is_409(api, pool):
    Desktop.objects.filter(pool=pool).exclude(name="API-03").update(assigned_user="bob")

    problem = assert_problem(api["admin"].post(url(pool), {"size": 1}), 409)

    assert "Only 1 of the 2 desktops" in problem["detail"]
    assert not Operation.objects.filter(kind="delete").exists()


@pytest.mark.parametrize("role", ["helpdesk", "auditor"])
def test_only_administrators_resize(api, pool, role):
    assert_problem(api[role].post(url(pool), {"size": 4}), 403)

    assert AuditEvent.objects.filter(action="resize_pool", outcome="denied").count() == 1
    assert pool.desktops.count() == 3
