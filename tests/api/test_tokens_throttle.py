"""Rate limits: per token (or session user), counted in Redis so every worker shares them,
answered 429 problem+json with Retry-After; an unreachable Redis does not stop the API."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.core.cache import caches

from audit.models import AuditEvent
from portal.api.throttles import PerTokenRateThrottle
from portal.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def rate(settings):
    """Lower the "user" rate for the test."""

    def set_rate(value: str) -> None:
        rest = copy.deepcopy(settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"]["user"] = value
        settings.REST_FRAMEWORK = rest

    return set_rate


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_the_counts_are_in_redis_shared_by_every_worker():
    assert settings.CACHES["throttle"]["BACKEND"].endswith("RedisCache")
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] == [
        f"{PerTokenRateThrottle.__module__}.{PerTokenRateThrottle.__name__}"
    ]


def test_a_token_over_its_rate_gets_429_with_retry_after(client, users, rate, redis_conn):
    # (Tokens are counted by their random prefix: no earlier test's count can be theirs.)
    rate("3/minute")
    busy_token, busy = ApiToken.issue(users["admin"], "busy")
    _, other = ApiToken.issue(users["admin"], "other")
    answers = [client.get("/api/v1/pools/", headers=bearer(busy)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["type"] == "too-many-requests" and refused.json()["status"] == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    # The count is in Redis, where another worker process would read it.
    assert any(busy_token.prefix.encode() in key for key in redis_conn.keys("throttle:*"))
    # Each token has its budget: another token of the same user is not slowed down.
    assert client.get("/api/v1/pools/", headers=bearer(other)).status_code == 200


def test_refused_calls_count_too_so_denials_cannot_flood_the_audit_log(client, users, rate):
    rate("2/minute")
    _, secret = ApiToken.issue(users["helpdesk"], "desk")
    statuses = [client.get("/api/v1/pools/", headers=bearer(secret)).status_code for _ in range(4)]
    assert statuses == [403, 403, 429, 429]
    assert AuditEvent.objects.filter(outcome="denied").count() == 2


def test_a_session_user_is_limited_too(client, users, rate, redis_conn):
    # redis_conn empties Redis first: the counts of earlier tests' calls by a user with the
    # same id are gone.
    rate("2/minute")
    client.force_login(users["auditor"])
    statuses = [client.get("/api/v1/tokens/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_an_unreachable_redis_leaves_the_api_unthrottled(client, users, rate, settings):
    rate("1/minute")
    unreachable = copy.deepcopy(settings.CACHES)
    # Port 1 on this machine: nothing listens there, the connection is refused at once.
    unreachable["throttle"]["LOCATION"] = "redis://127.0.0.1:1/0"
    settings.CACHES = unreachable
    assert caches["throttle"]._servers == ["redis://127.0.0.1:1/0"]
    _, secret = ApiToken.issue(users["admin"], "script")
    statuses = [client.get("/api/v1/pools/", headers=bearer(secret)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
