"""Hostile input never reaches the database as it is: a NUL byte anywhere in a request, or a
sign-in name too long for any column, is a clear 400 or a form error, never a 500, and a
failed sign-in is audited whatever name was tried (issue 9, items 2 and 7)."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    return client


@pytest.mark.parametrize(
    "path, query",
    [
        ("pools:list", {"q": "a\x00b"}),
        ("helpdesk", {"q": "\x00"}),
        ("helpdesk", {"user": "al\x00ice"}),
        ("composer:operations", {"pool": "\x00"}),
        ("audit", {"actor": "\x00"}),
        ("pools:datastores", {"sort": "\x00name"}),
    ],
)
def test_a_nul_byte_in_a_query_is_a_400_with_the_reason(admin_client, path, query):
    response = admin_client.get(reverse(path), query)
    assert response.status_code == 400
    assert "NUL" in response.content.decode()


def test_a_nul_byte_in_a_form_or_the_path_is_a_400_too(admin_client, lab):
    response = admin_client.post(reverse("pools:create"), {"name": "x\x00y"})
    assert response.status_code == 400
    response = admin_client.get("/pools/%00/")
    assert response.status_code in (400, 404)


@pytest.mark.parametrize("name", ["a" * 300, "a" * 151, "\U0001f600" * 100, "\U0001f600" * 200])
def test_any_sign_in_name_is_a_form_error_and_is_audited(client, users, name):
    response = client.post(reverse("login"), {"username": name, "password": "wrong"})
    assert response.status_code == 200
    assert "Your user name and password did not match" in response.content.decode()
    event = AuditEvent.objects.filter(action="login").last()
    assert event is not None and event.outcome == "denied"
    assert event.target_name.startswith(name[:150]) and len(event.target_name) <= 151


def test_a_nul_byte_at_sign_in_is_a_400_and_audited(client, users):
    response = client.post(reverse("login"), {"username": "adm\x00in", "password": "x"})
    assert response.status_code == 400
    event = AuditEvent.objects.get(action="rejected_input")
    assert event.outcome == "denied" and event.actor_name == "anonymous"
    assert event.parameters["path"] == reverse("login")
