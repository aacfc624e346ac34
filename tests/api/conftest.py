"""A script's view of the API: a token per role and a caller that sends JSON with it."""

from __future__ import annotations

import json

import pytest

from portal.models import ApiToken


class Caller:
    """Calls the API as one user with a Bearer token, like a script would."""

    def __init__(self, client, secret: str):
        self.client, self.secret = client, secret

    def __call__(self, method: str, url: str, body=None, key: str | None = None):
        headers = {"Authorization": f"Bearer {self.secret}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        send = getattr(self.client, method.lower())
        if body is None:
            return send(url, headers=headers)
        return send(
            url,
            data=body if isinstance(body, str) else json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    def post(self, url, body=None, key=None):
        return self("POST", url, body if body is not None else {}, key)


@pytest.fixture
def api(client, users):
    """api["admin"]("GET", "/api/v1/pools/"), api["helpdesk"].post(...)."""
    callers = {}
    for role, user in users.items():
        _, secret = ApiToken.issue(user, f"{role} script")
        callers[role] = Caller(client, secret)
    return callers
