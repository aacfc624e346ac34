"""The inventory as the API reads it: the same figures and filters as the pages, the same
permissions per role (portal/roles.py), no endpoint secret."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from pools import usage
from pools.models import Desktop, Replica
from portal.models import ApiToken
from tests import factories as f

pytestmark = pytest.mark.django_db
GIB = f.GIB


@pytest.fixture
def api(client):
    """get(who, path, **params) -> response, signed in with the user's own API token."""
    secrets = {}

    def get(who, path, **params):
        if who.pk not in secrets:
            secrets[who.pk] = ApiToken.issue(who, "tests")[1]
        return client.get(path, params, headers={"Authorization": f"Bearer {secrets[who.pk]}"})

    return get


@pytest.fixture
def estate(users):
    endpoint = f.endpoint(
        settings={"host": "vc.example", "password_env": "VC_SECRET_PASSWORD"}, sync_error="late"
    )
    a = f.datastore(endpoint, "ds-a", capacity_mb=100 * GIB, free_mb=10 * GIB)
    b = f.datastore(endpoint, "ds-b", capacity_mb=200 * GIB)
    image = f.image(endpoint)
    v1, v2 = f.version(image, "v1"), f.version(image, "v2", disk_mb=10 * GIB)
    r1 = f.replica(v1, a)
    f.replica(v2, b)  # nothing uses it
    sales = f.pool("Sales", v1, [a, (b, {"overcommit": 7, "selected": False})])
    eng = f.pool("Eng", v2, [b], overcommit=0)
    f.desktops(sales, ["SAL-1", "SAL-2"], a, replica=r1, state="available", assigned_user="ann")
    f.desktop(sales, "SAL-3", b, state="error", reason="boom", session_user="bob")
    f.desktop(eng, "ENG-1", b, state="connected", assigned_user="bob", session_user="bob")
    return {"endpoint": endpoint, "a": a, "b": b, "v1": v1, "v2": v2, "sales": sales, "eng": eng}


def test_a_hypervisor_shows_its_limits_and_sync_but_no_settings(api, users, estate):
    body = api(users["admin"], "/api/v1/hypervisors/").json()["results"]
    assert body == [
        {
            "id": estate["endpoint"].pk,
            "name": "sim",
            "driver": "simulator",
            "max_provisioning": 8,
            "max_maintenance": 12,
            "outage_window_seconds": 600,
            "synced_at": None,
            "sync_error": "late",
        }
    ]
    assert "VC_SECRET" not in api(users["auditor"], "/api/v1/hypervisors/").content.decode()


def test_datastores_show_the_figures_of_the_datastores_page(api, users, estate):
    rows = {r["name"]: r for r in api(users["auditor"], "/api/v1/datastores/").json()["results"]}
    page = {u.datastore.name: u for u in usage.datastore_usage()}
    a, b = rows["ds-a"], rows["ds-b"]
    # Two Sales desktops on ds-a, each counted at its parent disk's size.
    assert a["desktops"] == 2 and a["committed_mb"] == 2 * 40 * GIB
    assert a["used_mb"] == 90 * GIB and a["warn"] is False and a["used_percent"] == 90.0
    assert a["overcommit"] == 4 and a["overcommit_limit_mb"] == 400 * GIB
    assert a["overcommit_room_mb"] == (400 - 80) * GIB
    # ds-b: Sales deselected it (7x, not counted), Eng selects it unbounded.
    assert b["overcommit"] == 0 and b["overcommit_limit_mb"] is None
    assert b["overcommit_room_mb"] is None and b["committed_percent"] is None
    assert b["committed_mb"] == 40 * GIB + 10 * GIB
    assert [(p["name"], p["selected"], p["desktops"]) for p in b["pools"]] == [
        ("Eng", True, 1),
        ("Sales", False, 1),
    ]
    for name, row in rows.items():
        assert row["committed_mb"] == page[name].committed_mb
        assert row["overcommit"] == page[name].factor
    one = api(users["admin"], f"/api/v1/datastores/{estate['a'].pk}/").json()
    assert one == a


def test_images_versions_and_replicas(api, users, estate):
    images = api(users["admin"], "/api/v1/images/").json()["results"]
    assert [v["snapshot"] for v in images[0]["versions"]] == ["v1", "v2"]
    versions = api(users["admin"], "/api/v1/image-versions/").json()["results"]
    assert [(v["snapshot"], v["desktops"], v["default_of"]) for v in versions] == [
        ("v1", 3, [{"id": estate["sales"].pk, "name": "Sales"}]),
        ("v2", 1, [{"id": estate["eng"].pk, "name": "Eng"}]),
    ]
    replicas = api(users["admin"], "/api/v1/replicas/").json()["results"]
    assert [(r["name"], r["desktops"], r["unused"]) for r in replicas] == [
        ("replica-v1-ds-a", 2, False),
        # Eng's desktop of v2 sits on ds-b without reading from it: not unused.
        ("replica-v2-ds-b", 0, False),
    ]
    Desktop.objects.filter(name="ENG-1").delete()
    ready = api(users["admin"], "/api/v1/replicas/", status=Replica.Status.READY).json()
    assert ready["results"][1]["unused"] is True
    only_v2 = api(users["admin"], "/api/v1/image-versions/", image=0).status_code
    assert only_v2 == 400  # ids start at 1


def test_pools_count_their_desktops_by_state_and_list_their_datastores(api, users, estate):
    pools = {p["name"]: p for p in api(users["admin"], "/api/v1/pools/").json()["results"]}
    sales = pools["Sales"]
    assert sales["desktops"] == 3
    assert {k: v for k, v in sales["desktops_by_state"].items() if v} == {
        "available": 2,
        "error": 1,
    }
    assert sales["desktops_by_state"]["maintenance"] == 0
    assert sales["datastores"] == [
        {"id": estate["a"].pk, "name": "ds-a", "overcommit": 4, "selected": True},
        {"id": estate["b"].pk, "name": "ds-b", "overcommit": 7, "selected": False},
    ]
    assert list(pools) == ["Eng", "Sales"]  # by name
    assert api(users["admin"], f"/api/v1/pools/{estate['sales'].pk}/").json() == sales


def _names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [d["name"] for d in response.json()["results"]]


def test_desktops_filter_as_the_pool_page_does(api, users, estate):
    hal = users["helpdesk"]  # helpdesk finds desktops (pools.view_desktop)
    url = "/api/v1/desktops/"
    assert _names(api(hal, url)) == ["SAL-1", "SAL-2", "SAL-3", "ENG-1"]  # by id
    assert _names(api(hal, url, pool="Eng")) == ["ENG-1"]
    assert _names(api(hal, url, pool=str(estate["sales"].pk))) == ["SAL-1", "SAL-2", "SAL-3"]
    assert _names(api(hal, url, pool="nope")) == []
    assert _names(api(hal, url, state="error")) == ["SAL-3"]
    # Exact user, assigned or logged on; q is any part of the name or a user's.
    assert _names(api(hal, url, user="bob")) == ["SAL-3", "ENG-1"]
    assert _names(api(hal, url, user="bo")) == []
    assert _names(api(hal, url, q="sal-")) == ["SAL-1", "SAL-2", "SAL-3"]
    assert _names(api(hal, url, q="ann")) == ["SAL-1", "SAL-2"]
    assert _names(api(hal, url, pool="Sales", state="available", q="2")) == ["SAL-2"]
    assert _names(api(hal, url, datastore=estate["b"].pk)) == ["SAL-3", "ENG-1"]
    assert _names(api(hal, url, image_version=estate["v2"].pk)) == ["ENG-1"]


def test_a_desktop_and_its_history_newest_first(api, users, estate):
    desktop = Desktop.objects.get(name="SAL-1")
    f.task(f.operation(estate["sales"], users["admin"], "refresh", "succeeded"), desktop)
    newer = f.operation(estate["sales"], users["helpdesk"], "power", "running")
    f.task(newer, desktop, "running", step="power_on")
    f.task(newer, Desktop.objects.get(name="SAL-2"))  # another desktop's: not in its history
    hal = users["helpdesk"]
    detail = api(hal, f"/api/v1/desktops/{desktop.pk}/").json()
    assert detail["pool"] == {"id": estate["sales"].pk, "name": "Sales"}
    assert detail["datastore"]["name"] == "ds-a" and detail["disks"] == []
    history = api(hal, f"/api/v1/desktops/{desktop.pk}/history/").json()["results"]
    assert [(h["operation"]["kind"], h["status"], h["step"]) for h in history] == [
        ("power", "running", "power_on"),
        ("refresh", "pending", ""),
    ]
    assert history[0]["operation"]["requested_by"] == "hal"
    assert api(hal, "/api/v1/desktops/999999/history/").status_code == 404
    assert api(hal, "/api/v1/desktops/999999/").status_code == 404


ROUTES = [
    "hypervisors/",
    "datastores/",
    "images/",
    "image-versions/",
    "replicas/",
    "pools/",
    "desktops/",
    "operations/",
    "audit/",
]
# What each role may read, as on the pages (portal/roles.py): helpdesk finds desktops only;
# auditors read everything; administrators too.
HELPDESK_READS = {"desktops/"}


@pytest.mark.parametrize("route", ROUTES)
def test_each_role_reads_what_its_pages_show(api, users, route):
    assert api(users["admin"], f"/api/v1/{route}").status_code == 200
    assert api(users["auditor"], f"/api/v1/{route}").status_code == 200
    helpdesk = api(users["helpdesk"], f"/api/v1/{route}")
    if route in HELPDESK_READS:
        assert helpdesk.status_code == 200
    else:
        assert helpdesk.status_code == 403
        assert helpdesk["Content-Type"] == "application/problem+json"
        denial = AuditEvent.objects.filter(outcome="denied").latest("id")
        assert denial.actor_name == "hal"
        assert denial.parameters["path"] == f"/api/v1/{route}"
