"""The API's ground rules: tokens sign a script in, errors are problem+json, the schema is valid."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from portal.models import ApiToken

pytestmark = pytest.mark.django_db


def test_a_token_signs_in_and_anonymous_is_401_problem(client, users):
    token, secret = ApiToken.issue(users["admin"], "pipeline")
    anonymous = client.get("/api/v1/pools/")
    assert anonymous.status_code == 401
    assert anonymous["Content-Type"] == "application/problem+json"
    assert anonymous.json()["status"] == 401
    assert anonymous["WWW-Authenticate"] == "Bearer"

    signed = client.get("/api/v1/pools/", headers={"Authorization": f"Bearer {secret}"})
    assert signed.status_code == 200
    assert signed.json()["results"] == []
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer lcp_nope_x", "Bearer a b", "Bearer \u00e9t\u00e9", "Bearer " + "x" * 500],
)
def test_a_bad_token_is_401_problem(client, users, header):
    response = client.get("/api/v1/pools/", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["type"] == "not-authenticated"


def test_a_revoked_or_expired_token_no_longer_works(client, users):
    from datetime import timedelta

    from django.utils import timezone

    revoked, secret1 = ApiToken.issue(users["admin"], "old")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    _, secret2 = ApiToken.issue(users["admin"], "short", expires_at=timezone.now() - timedelta(1))
    for secret in (secret1, secret2):
        response = client.get("/api/v1/pools/", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401


def test_an_unknown_api_address_is_a_404_problem(client, users):
    client.force_login(users["admin"])
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_the_schema_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/pools/" in out.read_text()
