"""The API's actions end to end: a script's JSON -> the pages' forms -> the services -> real RQ
jobs on the simulator, checked in the inventory and the audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from composer import services
from composer.models import DesktopTask, Operation
from pools.models import Desktop, ImageVersion, Pool, PoolDatastore
from portal.models import IdempotencyKey
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status
TaskStatus = DesktopTask.Status


@pytest.fixture
def pool(users, lab, run_jobs):
    """A provisioned pool of 4 desktops on ds-a and ds-b."""
    made = factories.requested_pool(users["admin"], lab, "Api", "API-{n:fixed=2}", 4)
    run_jobs()
    operation = Operation.objects.get(pool=made)
    assert operation.status == Status.SUCCEEDED
    return Pool.objects.get(name="Api")


def ids(pool, *names):
    found = dict(Desktop.objects.filter(pool=pool).values_list("name", "pk"))
    return [found[name] for name in names]


def audit(action, outcome=None):
    events = AuditEvent.objects.filter(action=action)
    if outcome:
        events = events.filter(outcome=outcome)
    return events


def assert_problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return body


# -- image versions ---------------------------------------------------------------------------


def test_register_a_version_reads_its_sizes_from_the_hypervisor(api, lab):
    lab.sim.add_parent_vm("gold", ["v1", "v2", "v3"], disk_mb=50 * GIB, used_mb=22 * GIB)
    url = f"/api/v1/images/{lab.v1.image_id}/versions/"

    response = api["admin"].post(url, {"snapshot": "v3"}, key="build-117")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["snapshot"], body["disk_mb"], body["used_mb"]) == ("v3", 50 * GIB, 22 * GIB)
    assert audit("register_image_version", "succeeded").count() == 1

    # The pipeline's retry: the same answer, nothing registered twice.
    again = api["admin"].post(url, {"snapshot": "v3"}, key="build-117")
    assert (again.status_code, again.json()) == (201, body)
    assert again["Idempotent-Replayed"] == "true"
    assert ImageVersion.objects.filter(snapshot="v3").count() == 1

    missing = api["admin"].post(url, {"snapshot": "v9"})
    problem = assert_problem(missing, 400)
    assert "v9" in problem["errors"]["snapshot"][0]
    assert audit("register_image_version", "refused").count() == 1

    lab.sim.set_outage(60)
    try:
        down = api["admin"].post(url, {"snapshot": "v2-new"})
    finally:
        lab.sim.set_outage(0)
    assert_problem(down, 503)

    denied = api["helpdesk"].post(url, {"snapshot": "v3b"})
    assert_problem(denied, 403)
    assert audit("register_image_version", "denied").count() == 1


# -- pools ------------------------------------------------------------------------------------


def pool_body(lab, **changes):
    return {
        "name": "Sales",
        "naming_pattern": "SAL-{n:fixed=2}",
        "size": 2,
        "image_version": lab.v1.pk,
        "datastores": [lab.ds["ds-a"].pk],
        **changes,
    }


def test_create_a_pool_once_per_key_with_the_forms_rules(api, lab, run_jobs):
    response = api["admin"].post("/api/v1/pools/", pool_body(lab), key="k1")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["pool"]["name"] == "Sales" and body["operation"]["kind"] == "provision"
    again = api["admin"].post("/api/v1/pools/", pool_body(lab), key="k1")
    assert (again.status_code, again.json()) == (201, body)
    assert Pool.objects.filter(name="Sales").count() == 1
    assert audit("create_pool", "requested").count() == 1
    run_jobs()
    assert Operation.objects.get(pk=body["operation"]["id"]).status == Status.SUCCEEDED

    # The same key for another request is refused, not replayed.
    other = api["admin"].post("/api/v1/pools/", pool_body(lab, name="Other"), key="k1")
    assert assert_problem(other, 422)["type"] == "idempotency-key-reused"

    # The pool form's rules: a name taken, a bad pattern, no room.
    taken = assert_problem(api["admin"].post("/api/v1/pools/", pool_body(lab)), 400)
    assert "already exists" in taken["errors"]["name"][0]
    bad = api["admin"].post("/api/v1/pools/", pool_body(lab, name="B", naming_pattern="{n:x}"))
    assert "naming_pattern" in assert_problem(bad, 400)["errors"]
    huge = pool_body(lab, name="Huge", naming_pattern="HUG-{n}", size=500)
    huge["datastores"] = [lab.ds["ds-tiny"].pk]
    assert "datastores" in assert_problem(api["admin"].post("/api/v1/pools/", huge), 400)["errors"]
    typed = api["admin"].post("/api/v1/pools/", pool_body(lab, size="many", datastores="x"))
    assert {"size", "datastores"} <= set(assert_problem(typed, 400)["errors"])
    assert_problem(api["admin"].post("/api/v1/pools/", "[1, 2]"), 400)
    for odd in ({"image_version": 10**30}, {"name": "a\x00"}, {"datastores": [10**30]}):
        assert_problem(api["admin"].post("/api/v1/pools/", pool_body(lab, **odd)), 400)

    assert_problem(api["helpdesk"].post("/api/v1/pools/", pool_body(lab, name="Hd")), 403)
    assert audit("create_pool", "denied").count() == 1
    # Listing is still the inventory's.
    assert [p["name"] for p in api["auditor"]("GET", "/api/v1/pools/").json()["results"]] == [
        "Sales"
    ]


def test_pool_datastores_select_deselect_and_overcommit(api, lab, pool):
    url = f"/api/v1/pools/{pool.pk}/datastores/"
    a, b, tiny = lab.ds["ds-a"], lab.ds["ds-b"], lab.ds["ds-tiny"]
    response = api["admin"](
        "PATCH",
        url,
        {
            "datastores": [
                {"datastore": a.pk, "selected": False},
                {"datastore": tiny.pk, "selected": True, "overcommit": 7},
            ]
        },
    )
    assert response.status_code == 200, response.content
    links = {row["datastore_name"]: row for row in response.json()}
    assert (links["ds-a"]["selected"], links["ds-b"]["selected"]) == (False, True)
    assert (links["ds-tiny"]["selected"], links["ds-tiny"]["overcommit"]) == (True, 7)
    assert audit("pool_datastores", "succeeded").count() == 1

    none_left = api["admin"](
        "PATCH",
        url,
        {"datastores": [{"datastore": d.pk, "selected": False} for d in (a, b, tiny)]},
    )
    assert "Select at least one" in assert_problem(none_left, 400)["errors"]["non_field_errors"][0]
    stranger = api["admin"]("PATCH", url, {"datastores": [{"datastore": 99999}]})
    assert_problem(stranger, 400)
    assert PoolDatastore.objects.filter(pool=pool, selected=True).count() == 2


# -- operations -------------------------------------------------------------------------------


def test_refresh_the_pool_once_per_key_and_it_runs(api, pool, run_jobs):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    body = {"kind": "refresh", "logoff_policy": "force", "grace_seconds": 0}
    first = api["admin"].post(url, body, key="nightly-42")
    assert first.status_code == 201, first.content
    again = api["admin"].post(url, body, key="nightly-42")
    assert (again.status_code, again.json()) == (201, first.json())
    operation = Operation.objects.get(kind="refresh")
    assert operation.pk == first.json()["id"]
    assert (operation.logoff_policy, operation.grace_seconds) == ("force", 0)
    assert operation.tasks.count() == 4
    assert audit("refresh", "requested").count() == 1
    run_jobs()
    state = api["admin"]("GET", f"/api/v1/operations/{operation.pk}/").json()
    assert state["status"] == "succeeded"
    assert (state["progress"]["succeeded"], state["progress"]["total"]) == (4, 4)
    tasks = api["admin"]("GET", f"/api/v1/operations/{operation.pk}/desktops/").json()
    assert {t["status"] for t in tasks["results"]} == {"succeeded"}


def test_a_key_left_unanswered_by_a_dead_request_is_taken_over(api, pool):
    """A web worker killed after the work committed but before the answer was kept leaves
    the key claimed and unanswered: a retry after ABANDONED is answered with the same
    operation (the service's one-time token), neither waiting for ever nor starting twice."""
    url = f"/api/v1/pools/{pool.pk}/operations/"
    body = {"kind": "refresh", "logoff_policy": "force", "grace_seconds": 0}
    first = api["admin"].post(url, body, key="died")
    assert first.status_code == 201
    IdempotencyKey.objects.filter(key="died").update(
        status_code=None, body="", created_at=timezone.now() - timedelta(minutes=6)
    )

    retried = api["admin"].post(url, body, key="died")

    assert retried.status_code == 201, retried.content
    assert retried.json()["id"] == first.json()["id"]
    assert Operation.objects.filter(kind="refresh").count() == 1
    assert IdempotencyKey.objects.get(key="died").status_code == 201


def test_listed_busy_desktops_are_409_but_the_whole_pool_skips_them(api, users, pool):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    first, second = ids(pool, "API-01", "API-02")
    holding = api["admin"].post(url, {"kind": "refresh", "desktops": [first]}).json()

    refused = api["admin"].post(url, {"kind": "reset", "desktops": [first, second]})
    problem = assert_problem(refused, 409)
    assert problem["busy"] == [{"desktop": first, "name": "API-01", "operation": holding["id"]}]
    assert "API-01" in problem["detail"]
    assert Operation.objects.exclude(kind="provision").count() == 1

    # A dry run says the same without refusing or keeping anything.
    preview = api["admin"].post(url, {"kind": "reset", "dry_run": True})
    assert preview.status_code == 200, preview.content
    shown = preview.json()
    assert shown["planned"] is False and shown["plan"] is None
    assert [d["name"] for d in shown["desktops"]] == ["API-02", "API-03", "API-04"]
    assert shown["busy"] == [{"desktop": first, "name": "API-01", "operation": holding["id"]}]
    assert Operation.objects.exclude(kind="provision").count() == 1

    whole = api["admin"].post(url, {"kind": "reset"})
    assert whole.status_code == 201
    skipped = [t for t in whole.json()["tasks"] if t["status"] == "skipped"]
    assert [t["desktop_name"] for t in skipped] == ["API-01"]


def test_recompose_dry_run_plan_approve_and_the_desktops_move(api, lab, pool, run_jobs):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    body = {"kind": "recompose", "options": {"image_version": lab.v2.pk, "set_default": True}}

    preview = api["admin"].post(url, {**body, "dry_run": True})
    assert preview.status_code == 200, preview.content
    assert preview.json()["planned"] is True and preview.json()["plan"]
    assert not Operation.objects.filter(kind="recompose").exists()
    assert not audit("recompose").exists()

    draft = api["admin"].post(url, body, key="plan-1")
    assert draft.status_code == 201, draft.content
    plan = draft.json()
    assert (plan["status"], plan["planned"]) == ("draft", True)
    assert plan["plan"] == preview.json()["plan"]
    assert api["admin"].post(url, body, key="plan-1").json()["id"] == plan["id"]
    assert Operation.objects.filter(kind="recompose").count() == 1
    assert audit("recompose", "planned").count() == 1

    approve = f"/api/v1/operations/{plan['id']}/approve/"
    approved = api["admin"].post(approve, key="approve-1")
    assert approved.status_code == 200 and approved.json()["status"] == "queued"
    assert api["admin"].post(approve, key="approve-1").json() == approved.json()
    # Without the key, a second approval is the state's refusal.
    assert "plan is" in assert_problem(api["admin"].post(approve), 409)["detail"]
    assert audit("recompose", "requested").count() == 1

    run_jobs()
    assert Operation.objects.get(pk=plan["id"]).status == Status.SUCCEEDED
    assert set(pool.desktops.values_list("image_version", flat=True)) == {lab.v2.pk}
    pool.refresh_from_db()
    assert pool.image_version_id == lab.v2.pk


def test_controls_answer_409_when_the_state_refuses(api, lab, pool):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    draft = api["admin"].post(url, {"kind": "rebalance"}).json()
    assert draft["status"] == "draft"
    discard = f"/api/v1/operations/{draft['id']}/discard/"
    assert api["admin"].post(discard).json()["status"] == "cancelled"
    assert_problem(api["admin"].post(discard), 409)
    assert audit("rebalance", "cancelled").count() == 1

    later = (timezone.now() + timedelta(days=1)).isoformat()
    scheduled = api["admin"].post(url, {"kind": "refresh", "start_at": later}).json()
    assert scheduled["status"] == "scheduled"
    ops = f"/api/v1/operations/{scheduled['id']}"
    assert_problem(api["admin"].post(f"{ops}/pause/"), 409)
    assert_problem(api["admin"].post(f"{ops}/resume/"), 409)
    assert api["admin"].post(f"{ops}/cancel/").json()["status"] == "cancelled"
    assert audit("cancel_operation", "succeeded").count() == 1
    assert_problem(api["admin"].post(f"{ops}/cancel/"), 409)
    assert_problem(api["helpdesk"].post(f"{ops}/cancel/"), 403)
    assert_problem(api["admin"].post("/api/v1/operations/999999/approve/"), 404)


def test_bad_operation_requests_are_400_with_the_field(api, lab, pool, users):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    other = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Other",
            naming_pattern="OTH-{n}",
            size=1,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    ).pool
    foreign = other.desktops.get().pk
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    cases = [
        ({"kind": "format_c"}, "kind"),
        ({"kind": "provision"}, "kind"),  # not offered on the pool page
        ({"kind": "refresh", "desktops": []}, "desktops"),
        ({"kind": "refresh", "desktops": [foreign]}, "desktops"),
        ({"kind": "refresh", "desktops": [10**30]}, "desktops"),
        ({"kind": "refresh", "desktops": "all"}, "desktops"),
        ({"kind": "refresh", "start_at": past}, "start_at"),
        ({"kind": "refresh", "grace_seconds": -1}, "grace_seconds"),
        ({"kind": "refresh", "logoff_policy": "maybe"}, "logoff_policy"),
        ({"kind": "power"}, "options.action"),
        ({"kind": "power", "options": {"action": "explode"}}, "options.action"),
        ({"kind": "refresh", "options": {"image_version": 1}}, "options"),
        ({"kind": "recompose", "options": {"image_version": 10**6}}, "options.image_version"),
        ({"kind": "recompose", "options": {"image_version": 10**30}}, "options.image_version"),
        ({"kind": "delete", "options": {"keep_disks": "maybe"}}, "options.keep_disks"),
        ({"kind": "refresh", "warning_message": "a\x00b"}, "warning_message"),
        ({"kind": "refresh", "start_at": "9999-12-31T23:59:59+00:00"}, "start_at"),
    ]
    for body, field in cases:
        problem = assert_problem(api["admin"].post(url, body), 400)
        assert field in problem["errors"], (body, problem)
    assert_problem(api["admin"].post(url, "not json"), 400)
    assert_problem(api["admin"].post(url, {"kind": "refresh"}, key=""), 400)
    assert_problem(api["admin"].post("/api/v1/pools/999999/operations/", {"kind": "refresh"}), 404)
    assert not Operation.objects.filter(pool=pool).exclude(kind="provision").exists()


def test_helpdesk_only_what_the_helpdesk_page_allows(api, pool, run_jobs):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    first, second = ids(pool, "API-01", "API-02")
    ok = api["helpdesk"].post(url, {"kind": "refresh", "desktops": [first]})
    assert ok.status_code == 201, ok.content

    later = (timezone.now() + timedelta(hours=2)).isoformat()
    refused = [
        {"kind": "refresh", "desktops": [first, second]},
        {"kind": "refresh"},
        {"kind": "refresh", "desktops": [second], "start_at": later},
        {
            "kind": "recompose",
            "desktops": [second],
            "options": {"image_version": pool.image_version_id},
        },
        {"kind": "delete", "desktops": [second]},
        {"kind": "refresh", "desktops": [first, second], "dry_run": True},
    ]
    for body in refused:
        assert_problem(api["helpdesk"].post(url, body), 403)
    denials = audit("refresh", "denied").count() + audit("recompose", "denied").count()
    assert denials + audit("delete", "denied").count() == len(refused)
    assert Operation.objects.exclude(kind="provision").count() == 1
    assert_problem(api["auditor"].post(url, {"kind": "refresh", "desktops": [first]}), 403)
    # What they may do, they may preview.
    preview = api["helpdesk"].post(url, {"kind": "refresh", "desktops": [second], "dry_run": True})
    assert preview.status_code == 200 and preview.json()["desktops"][0]["id"] == second


def test_idempotency_keys_are_per_user_and_kept_a_day(api, lab, pool):
    url = f"/api/v1/pools/{pool.pk}/operations/"
    first, second = ids(pool, "API-01", "API-02")
    mine = api["admin"].post(url, {"kind": "refresh", "desktops": [first]}, key="same")
    theirs = api["helpdesk"].post(url, {"kind": "refresh", "desktops": [second]}, key="same")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]

    created = api["admin"].post("/api/v1/pools/", pool_body(lab), key="pool-key")
    assert created.status_code == 201
    # A day later the key is forgotten: the same request starts new work (here, refused:
    # the pool exists).
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    later = api["admin"].post("/api/v1/pools/", pool_body(lab), key="pool-key")
    assert "already exists" in assert_problem(later, 400)["errors"]["name"][0]
    assert IdempotencyKey.objects.count() == 1
