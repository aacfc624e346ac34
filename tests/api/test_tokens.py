"""Personal tokens over the API: made and listed by their user, shown once, stored hashed,
revoked at once, acting with their user's role, and named in every audit event of a call."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from audit.log import verify
from audit.models import AuditEvent
from portal import tokens
from portal.models import ApiToken, digest

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def make(user, name="script", **kwargs):
    return ApiToken.issue(user, name, **kwargs)


def test_a_new_token_is_shown_once_and_stored_hashed(client, users):
    client.force_login(users["auditor"])
    made = client.post(TOKENS, {"name": "siem export"}, content_type="application/json")
    assert made.status_code == 201
    assert made["Cache-Control"] == "no-store"
    body = made.json()
    secret = body["secret"]
    assert secret.startswith(body["starts_with"] + "_") and body["status"] == "active"
    assert body["user"] == "aud" and body["expires_at"] is None

    row = ApiToken.objects.values().get(pk=body["id"])
    assert secret not in repr(row) and row["digest"] == digest(secret)
    # Never again: neither the list nor the token's own address has it.
    client.logout()
    listed = client.get(TOKENS, headers=bearer(secret))
    assert listed.status_code == 200
    assert secret not in listed.content.decode() and "secret" not in listed.json()["results"][0]
    one = client.get(f"{TOKENS}{body['id']}/", headers=bearer(secret))
    assert one.status_code == 200 and "secret" not in one.json()

    event = AuditEvent.objects.get(action="create_api_token")
    assert (event.actor_name, event.outcome, event.target_id) == (
        "aud",
        "succeeded",
        str(row["id"]),
    )
    assert secret not in repr(AuditEvent.objects.values().get(pk=event.pk))


@pytest.mark.parametrize(
    "data, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "ok", "expires_at": "yesterday"}, "expires_at"),
        ({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "ok", "expires_at": "9999-12-31T23:59:59-12:00"}, "expires_at"),
        (["not", "an", "object"], "non_field_errors"),
    ],
)
def test_a_bad_token_request_is_a_400_problem(client, users, data, field):
    client.force_login(users["helpdesk"])
    response = client.post(TOKENS, data, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert not ApiToken.objects.exists()


def test_a_token_expires_and_its_last_use_is_recorded(client, users):
    client.force_login(users["admin"])
    later = timezone.now() + timedelta(days=30)
    made = client.post(
        TOKENS, {"name": "monthly", "expires_at": later.isoformat()}, "application/json"
    ).json()
    client.logout()
    token = ApiToken.objects.get(pk=made["id"])
    assert token.expires_at == later
    assert token.last_used_at is None

    assert client.get("/api/v1/pools/", headers=bearer(made["secret"])).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    listed = client.get(TOKENS, headers=bearer(made["secret"])).json()["results"]
    assert listed[0]["last_used_at"] is not None

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.get("/api/v1/pools/", headers=bearer(made["secret"]))
    assert expired.status_code == 401 and expired["Content-Type"] == "application/problem+json"


def test_revoking_stops_the_token_at_once_and_is_audited_naming_the_token_used(client, users):
    pipeline, secret = make(users["admin"], "pipeline")
    spare, spare_secret = make(users["admin"], "spare")
    # The spare token revokes the pipeline's: the event names both.
    gone = client.delete(f"{TOKENS}{pipeline.pk}/", headers=bearer(spare_secret))
    assert gone.status_code == 204
    assert client.get("/api/v1/pools/", headers=bearer(secret)).status_code == 401
    pipeline.refresh_from_db()
    assert pipeline.revoked_at is not None and not pipeline.usable

    event = AuditEvent.objects.get(action="revoke_api_token")
    assert event.target_id == str(pipeline.pk) and event.target_name == str(pipeline)
    assert event.parameters["api_token"] == str(spare)
    assert event.parameters["owner"] == "ada"

    # Again: nothing more happens, and it is still listed, revoked.
    assert client.delete(f"{TOKENS}{pipeline.pk}/", headers=bearer(spare_secret)).status_code == 204
    assert AuditEvent.objects.filter(action="revoke_api_token").count() == 1
    listed = {
        t["name"]: t for t in client.get(TOKENS, headers=bearer(spare_secret)).json()["results"]
    }
    assert listed["pipeline"]["status"] == "revoked" and listed["spare"]["status"] == "active"
    assert verify().ok


def test_a_helpdesk_token_is_refused_an_admin_route_and_the_denial_names_it(client, users):
    token, secret = make(users["helpdesk"], "desk script")
    response = client.get("/api/v1/pools/", headers=bearer(secret))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "forbidden"

    denial = AuditEvent.objects.get(outcome="denied")
    assert (denial.actor_name, denial.role, denial.action) == ("hal", "Helpdesk", "view_pools")
    assert denial.parameters["api_token"] == str(token) == f"desk script ({token.prefix}…)"
    assert denial.parameters["path"] == "/api/v1/pools/"
    assert denial.request_id == response["X-Request-ID"]
    # The chain still verifies with the token named in it.
    assert verify().ok
    call_command("verify_audit")


def test_a_session_call_names_no_token(client, users):
    client.force_login(users["helpdesk"])
    assert client.get("/api/v1/pools/").status_code == 403
    assert "api_token" not in AuditEvent.objects.get(outcome="denied").parameters


def test_users_cannot_see_or_revoke_others_tokens(client, users):
    admins, admin_secret = make(users["admin"], "admin's")
    _, desk_secret = make(users["helpdesk"], "desk")
    _, auditor_secret = make(users["auditor"], "auditor's")
    for secret in (desk_secret, auditor_secret):
        listed = client.get(TOKENS, headers=bearer(secret)).json()["results"]
        assert "admin's" not in {t["name"] for t in listed}
        assert client.get(f"{TOKENS}{admins.pk}/", headers=bearer(secret)).status_code == 404
        refused = client.delete(f"{TOKENS}{admins.pk}/", headers=bearer(secret))
        assert refused.status_code == 404
        assert refused["Content-Type"] == "application/problem+json"
    assert client.get(f"{TOKENS}{10**9}/", headers=bearer(desk_secret)).status_code == 404
    admins.refresh_from_db()
    assert admins.usable
    assert not AuditEvent.objects.filter(action="revoke_api_token").exists()

    # Every user's tokens: administrators only (a refusal is audited).
    refused = client.get(f"{TOKENS}?all=true", headers=bearer(desk_secret))
    assert refused.status_code == 403
    assert AuditEvent.objects.get(outcome="denied").action == "manage_api_tokens"
    assert client.get(f"{TOKENS}?all=maybe", headers=bearer(desk_secret)).status_code == 400
    every = client.get(f"{TOKENS}?all=1", headers=bearer(admin_secret)).json()["results"]
    assert {(t["user"], t["name"]) for t in every} == {
        ("ada", "admin's"),
        ("hal", "desk"),
        ("aud", "auditor's"),
    }


def test_an_administrator_revokes_anyones_token(client, users):
    _, admin_secret = make(users["admin"], "admin's")
    desk, desk_secret = make(users["helpdesk"], "desk")
    assert client.get(f"{TOKENS}{desk.pk}/", headers=bearer(admin_secret)).json()["user"] == "hal"
    assert client.delete(f"{TOKENS}{desk.pk}/", headers=bearer(admin_secret)).status_code == 204
    assert client.get(TOKENS, headers=bearer(desk_secret)).status_code == 401
    event = AuditEvent.objects.get(action="revoke_api_token")
    assert (event.actor_name, event.parameters["owner"]) == ("ada", "hal")


def test_a_token_cannot_make_one_that_outlives_it(client, users):
    ends = timezone.now() + timedelta(days=2)
    _, secret = make(users["admin"], "short", expires_at=ends)
    inherited = client.post(TOKENS, {"name": "child"}, "application/json", headers=bearer(secret))
    assert inherited.status_code == 201
    assert ApiToken.objects.get(name="child").expires_at == ends
    longer = client.post(
        TOKENS,
        {"name": "escape", "expires_at": (ends + timedelta(days=1)).isoformat()},
        "application/json",
        headers=bearer(secret),
    )
    assert longer.status_code == 400 and "expires_at" in longer.json()["errors"]
    assert not ApiToken.objects.filter(name="escape").exists()


def test_anonymous_gets_401_on_every_token_route(client, users):
    token, _ = make(users["admin"])
    for method, url in (("get", TOKENS), ("post", TOKENS), ("delete", f"{TOKENS}{token.pk}/")):
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url)
        assert response["Content-Type"] == "application/problem+json"
    token.refresh_from_db()
    assert token.usable


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_two_revocations_at_once_write_one_event(users, monkeypatch):
    """Two administrators' scripts revoke the same token at the same moment, each on its own
    connection: both are told it is revoked, the log says so once."""
    target, _ = make(users["helpdesk"], "leaked")
    secrets = [make(users["admin"], f"script {n}")[1] for n in range(2)]
    start, answers, errors = threading.Barrier(2), [], []
    # Both requests pass each permission check together, so they reach the revocation
    # together: a check-then-write there would let both write.
    together = threading.Barrier(2, timeout=10)
    can_manage_all = tokens.can_manage_all

    def in_step(user):
        together.wait()
        return can_manage_all(user)

    monkeypatch.setattr(tokens, "can_manage_all", in_step)

    def revoke(secret):
        try:
            start.wait()
            response = Client().delete(f"{TOKENS}{target.pk}/", headers=bearer(secret))
            answers.append(response.status_code)
        except Exception as exc:  # reported below: an assert in a thread would be lost
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=revoke, args=(secret,)) for secret in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and answers == [204, 204]
    assert AuditEvent.objects.filter(action="revoke_api_token").count() == 1
    assert verify().ok
