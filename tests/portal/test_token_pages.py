"""The API tokens pages: every user makes, lists and revokes their own tokens; the secret is
on the page once; administrators see and revoke everyone's; CSRF holds; all audited."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from portal.models import ApiToken, digest

pytestmark = pytest.mark.django_db

SECRET = re.compile(r'value="(lcp_[^"]+)"')


def create(client, name="pipeline", expires=""):
    return client.post(reverse("tokens"), {"name": name, "expires": expires})


@pytest.mark.parametrize("role", ["admin", "helpdesk", "auditor"])
def test_every_role_makes_a_token_whose_secret_is_shown_once(client, users, role):
    client.force_login(users[role])
    page = client.get(reverse("dashboard"), follow=True).content.decode()
    assert f'href="{reverse("tokens")}"' in page  # the user menu links to it

    made = create(client)
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    body = made.content.decode()
    secret = SECRET.search(body)[1]
    assert "shown this once" in body
    token = ApiToken.objects.get(user=users[role])
    assert secret.startswith(f"lcp_{token.prefix}_")
    # Stored hashed: no column holds the secret.
    assert token.digest == digest(secret)
    assert secret not in repr(ApiToken.objects.values().get(pk=token.pk))
    # It works, with its user's role.
    assert (
        Client()
        .get("/api/v1/tokens/", headers={"Authorization": f"Bearer {secret}"})
        .json()["results"][0]["name"]
        == "pipeline"
    )

    again = client.get(reverse("tokens")).content.decode()
    assert secret not in again and not SECRET.search(again)
    assert f"lcp_{token.prefix}…" in again and "pipeline" in again
    event = AuditEvent.objects.get(action="create_api_token")
    assert (event.actor_name, event.target_id) == (users[role].username, str(token.pk))
    assert "api_token" not in event.parameters  # made on a page, not with a token


def test_the_expiry_is_the_end_of_the_chosen_day_in_the_users_zone(client, users):
    client.force_login(users["helpdesk"])
    session = client.session
    session["time_zone"] = "Pacific/Auckland"
    session.save()
    zone = zoneinfo.ZoneInfo("Pacific/Auckland")
    day = timezone.localdate(timezone=zone) + dt.timedelta(days=10)
    assert create(client, "ten days", day.isoformat()).status_code == 200
    token = ApiToken.objects.get(name="ten days")
    assert token.expires_at == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)

    yesterday = timezone.localdate(timezone=zone) - dt.timedelta(days=1)
    for bad in (yesterday.isoformat(), "9999-12-31", "not a day"):
        refused = create(client, "bad", bad)
        assert refused.status_code == 200 and b'class="error"' in refused.content, bad
        assert not SECRET.search(refused.content.decode())
    for bad_name in ("", "a\tb", "x" * 101):
        assert b'class="error"' in create(client, bad_name).content
    assert ApiToken.objects.count() == 1


def test_an_expired_token_shows_as_expired_and_no_longer_works(client, users):
    token, secret = ApiToken.issue(users["auditor"], "old", timezone.now() - dt.timedelta(1))
    client.force_login(users["auditor"])
    assert b"status-expired" in client.get(reverse("tokens")).content
    assert (
        Client().get("/api/v1/tokens/", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )


def test_revoking_asks_then_stops_the_token_at_once(client, users):
    token, secret = ApiToken.issue(users["helpdesk"], "desk")
    client.force_login(users["helpdesk"])
    url = reverse("token_revoke", args=[token.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Revoke token desk?" in confirm.content
    token.refresh_from_db()
    assert token.usable  # asking changes nothing

    done = client.post(url)
    assert done.status_code == 302 and done["Location"] == reverse("tokens")
    api = Client().get("/api/v1/tokens/", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    assert b"status-revoked" in client.get(reverse("tokens")).content
    event = AuditEvent.objects.get(action="revoke_api_token")
    assert (event.actor_name, event.target_name) == ("hal", str(token))
    # Twice: nothing more is written.
    assert client.post(url).status_code == 302
    assert AuditEvent.objects.filter(action="revoke_api_token").count() == 1


@pytest.mark.parametrize("role", ["helpdesk", "auditor"])
def test_others_tokens_are_not_found(client, users, role):
    token, _ = ApiToken.issue(users["admin"], "admin's")
    client.force_login(users[role])
    url = reverse("token_revoke", args=[token.pk])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert "admin's" not in client.get(reverse("tokens")).content.decode()
    token.refresh_from_db()
    assert token.usable and not AuditEvent.objects.filter(action="revoke_api_token").exists()

    # Every user's tokens is the administrators' page: a refusal is audited.
    assert client.get(reverse("tokens_all")).status_code == 403
    denial = AuditEvent.objects.get(outcome="denied")
    assert (denial.actor_name, denial.action) == (users[role].username, "manage_api_tokens")


def test_an_administrator_sees_and_revokes_everyones_tokens(client, users):
    desk, desk_secret = ApiToken.issue(users["helpdesk"], "desk")
    ApiToken.issue(users["auditor"], "siem")
    client.force_login(users["admin"])
    assert f'href="{reverse("tokens_all")}"' in client.get(reverse("tokens")).content.decode()
    listing = client.get(reverse("tokens_all")).content.decode()
    assert "desk" in listing and "siem" in listing and ">hal<" in listing

    url = reverse("token_revoke", args=[desk.pk])
    assert b"hal" in client.get(url).content
    done = client.post(url)
    assert done.status_code == 302 and done["Location"] == reverse("tokens_all")
    desk.refresh_from_db()
    assert desk.revoked_at is not None
    assert (
        Client()
        .get("/api/v1/tokens/", headers={"Authorization": f"Bearer {desk_secret}"})
        .status_code
        == 401
    )
    event = AuditEvent.objects.get(action="revoke_api_token")
    assert (event.actor_name, event.parameters["owner"]) == ("ada", "hal")


def test_csrf_is_required_to_make_or_revoke_a_token(users):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["auditor"])
    token, _ = ApiToken.issue(users["auditor"], "mine")
    assert browser.post(reverse("tokens"), {"name": "forged"}).status_code == 403
    assert browser.post(reverse("token_revoke", args=[token.pk])).status_code == 403
    assert not ApiToken.objects.filter(name="forged").exists()
    token.refresh_from_db()
    assert token.usable

    # With the page's own CSRF token, the same POST works.
    page = browser.get(reverse("tokens")).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    made = browser.post(reverse("tokens"), {"name": "real", "csrfmiddlewaretoken": csrf})
    assert made.status_code == 200 and SECRET.search(made.content.decode())


def test_django_admin_lists_tokens_and_revokes_them_audited(client, users):
    users["admin"].is_staff = True
    users["admin"].save()
    desk, desk_secret = ApiToken.issue(users["helpdesk"], "desk")
    client.force_login(users["admin"])
    changelist = reverse("admin:portal_apitoken_changelist")
    page = client.get(changelist)
    assert page.status_code == 200 and b"desk" in page.content
    assert client.get(reverse("admin:portal_apitoken_add")).status_code == 403
    assert client.get(reverse("admin:portal_apitoken_change", args=[desk.pk])).status_code == 200

    done = client.post(changelist, {"action": "revoke", "_selected_action": [desk.pk], "index": 0})
    assert done.status_code == 302
    desk.refresh_from_db()
    assert desk.revoked_at is not None
    api = Client().get("/api/v1/tokens/", headers={"Authorization": f"Bearer {desk_secret}"})
    assert api.status_code == 401
    assert AuditEvent.objects.get(action="revoke_api_token").parameters["owner"] == "hal"
