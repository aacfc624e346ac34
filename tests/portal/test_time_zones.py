"""Every moment is written one way, with its zone, in the zone each user chooses (issue 10,
item 11): the server's until then; dates typed in filters and schedules are ISO."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 7, 1, 12, 30, 5, tzinfo=ZoneInfo("UTC"))


def an_event():
    return AuditEvent.objects.create(
        at=MOMENT, actor_name="ada", role="Administrators", action="refresh", outcome="requested"
    )


def sign_in(client, username):
    response = client.post(reverse("login"), {"username": username, "password": f"pw-{username}"})
    assert response.status_code == 302


def test_a_user_chooses_a_zone_and_every_page_shows_it_others_keep_the_servers(
    client, users, settings
):
    settings.TIME_ZONE = "UTC"
    an_event()
    sign_in(client, "aud")
    assert "2026-07-01 12:30:05 UTC" in client.get(reverse("audit")).content.decode()

    page = client.get(reverse("preferences")).content.decode()
    assert "The server&#x27;s (UTC)" in page
    saved = client.post(reverse("preferences"), {"time_zone": "Europe/Paris"}, follow=True)
    assert b"Times are now shown in Europe/Paris" in saved.content
    assert "2026-07-01 14:30:05 CEST" in client.get(reverse("audit")).content.decode()
    # A bad zone is a form error, not a 500, and changes nothing.
    bad = client.post(reverse("preferences"), {"time_zone": "Mars/Olympus"})
    assert bad.status_code == 200 and "time_zone" in bad.context["form"].errors

    # Kept for the next sign-in; read from the session, so no query per request for it.
    client.post(reverse("logout"))
    sign_in(client, "aud")
    with CaptureQueriesContext(connection) as queries:
        html = client.get(reverse("audit")).content.decode()
    assert "2026-07-01 14:30:05 CEST" in html
    assert not any("portal_preference" in q["sql"] for q in queries.captured_queries)

    other = client.__class__()
    sign_in(other, "ada")
    assert "2026-07-01 12:30:05 UTC" in other.get(reverse("audit")).content.decode()


def test_dates_typed_are_iso_and_a_schedule_is_read_in_the_users_zone(client, users, lab):
    sign_in(client, "aud")
    client.post(reverse("preferences"), {"time_zone": "America/New_York"})
    audit = client.get(reverse("audit")).content.decode()
    assert 'name="date_from" placeholder="YYYY-MM-DD"' in audit
    assert 'type="date"' not in audit
    filtered = client.get(reverse("audit"), {"date_from": "2026-07-01"})
    assert filtered.status_code == 200 and filtered.context["form"].is_valid()

    from composer import services
    from portal.operation_forms import OperationForm

    operation = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Tz",
            naming_pattern="TZ-{n}",
            size=1,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    from django.utils import timezone

    with timezone.override(ZoneInfo("America/New_York")):
        form = OperationForm(
            {"when": "later", "start_at": "2099-01-02 09:00", "logoff_policy": "wait"},
            pool=operation.pool,
            kind="logoff",
        )
        assert form.is_valid(), form.errors
        assert "In your time zone (America/New_York)" in form.fields["start_at"].help_text
    assert form.cleaned_data["start_at"] == datetime(2099, 1, 2, 14, 0, tzinfo=ZoneInfo("UTC"))
