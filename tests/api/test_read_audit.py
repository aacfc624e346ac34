"""The audit log as the API reads it: newest first, the audit page's filters (its own form),
for auditors and administrators only."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from audit.log import record
from audit.models import AuditEvent
from portal.audit_views import AuditFilterForm
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(users):
    endpoint = f.endpoint()
    pool = f.pool("Sales", f.version(f.image(endpoint)))
    record(actor=users["admin"], action="refresh", outcome="requested", target=pool)
    record(actor=users["helpdesk"], action="power", outcome="succeeded", target=pool)
    record(actor=users["admin"], action="create_pool", outcome="refused", message="full")
    return list(AuditEvent.objects.order_by("-id"))


def _ids(client, query: str = "") -> list[int]:
    response = client.get(f"/api/v1/audit/?{query}")
    assert response.status_code == 200, response.content
    return [e["id"] for e in response.json()["results"]]


def _page_ids(query: str) -> list[int]:
    form = AuditFilterForm(QueryDict(query))
    assert form.is_valid()
    return list(form.filter(AuditEvent.objects.order_by("-at", "-id")).values_list("id", flat=True))


@pytest.mark.parametrize(
    "query",
    [
        "",
        "who=ad",
        "role=Helpdesk",
        "action=refresh",
        "target=sal",
        "outcome=refused",
        "date_from=2000-01-01&date_to=9998-12-31",
        "date_to=2000-01-01",
    ],
)
def test_the_audit_log_filters_as_the_audit_page(client, users, events, query):
    client.force_login(users["auditor"])
    assert _ids(client, query) == _page_ids(query)


def test_an_event_shows_who_did_what_to_what(client, users, events):
    client.force_login(users["admin"])
    newest = client.get("/api/v1/audit/").json()["results"][0]
    assert newest["id"] == events[0].id and newest["hash"] == events[0].hash
    assert (newest["actor_name"], newest["action"], newest["outcome"]) == (
        "ada",
        "create_pool",
        "refused",
    )
    assert newest["message"] == "full"


@pytest.mark.parametrize(
    "query, field",
    [
        ("date_from=2026-13-45", "date_from"),
        ("date_from=2026-05-02&date_to=2026-05-01", "date_to"),
        ("date_from=0001-01-01", "date_from"),
        ("outcome=bogus", "outcome"),
        ("role=root", "role"),
        ("who=" + "x" * 10_000, "who"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(client, users, events, query, field):
    client.force_login(users["auditor"])
    response = client.get(f"/api/v1/audit/?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]


def test_a_nul_byte_is_a_400(client, users, events):
    client.force_login(users["auditor"])
    response = client.get("/api/v1/audit/?who=a%00b")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_only_auditors_and_administrators_read_the_audit_log(client, users, events):
    client.force_login(users["helpdesk"])
    response = client.get("/api/v1/audit/")
    assert response.status_code == 403
    assert AuditEvent.objects.order_by("-id")[0].action == "view_audit"
