"""Every API route x every role x every method, enforced on the server, as the pages' role
matrix (tests/portal/test_role_matrix.py) does for pages.

Allowed: the route answers (not 401/403, never 5xx). Forbidden for a signed-in role: 403
problem+json, nothing written but one "denied" audit event, nothing enqueued. Anonymous: 401
problem+json, nothing written at all. A method a route does not offer changes nothing.
A new route without a row here fails test_every_api_route_is_in_the_matrix.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from django.urls import get_resolver, reverse

from audit.models import AuditEvent
from composer.queue import queue
from pools.models import Replica
from portal.models import ApiToken
from tests.portal.test_role_matrix import snapshot
from tests.portal.test_role_matrix import world as page_world  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

ADMIN, HELPDESK, AUDITOR = "admin", "helpdesk", "auditor"
EVERYONE = {ADMIN, HELPDESK, AUDITOR}
READERS = {ADMIN, AUDITOR}
ROLES = [ADMIN, HELPDESK, AUDITOR, "anonymous"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
AGENTS_ONLY = {}

# URL name -> (its arguments, {method: roles allowed}). A method not listed is not offered.
MATRIX = {
    "api:pools": ("", {"GET": READERS, "POST": {ADMIN}}),
    "api:pool": ("pool", {"GET": READERS}),
    "api:image-versions-create": ("image", {"POST": {ADMIN}}),
    "api:pool-datastores": ("pool", {"PATCH": {ADMIN}}),
    # Helpdesk may ask for one desktop, now, of a kind it may run: the service decides, after
    # reading the request (tests/api/test_actions.py); an empty request is a 400 for anyone.
    "api:pool-operations": ("pool", {"POST": {ADMIN, HELPDESK}}),
    "api:approve": ("draft", {"POST": {ADMIN}}),
    "api:discard": ("draft", {"POST": {ADMIN}}),
    "api:pause": ("operation", {"POST": {ADMIN}}),
    "api:resume": ("operation", {"POST": {ADMIN}}),
    "api:cancel": ("operation", {"POST": {ADMIN}}),
    # Resizing: administrators only (the pool page's Resize).
    "api:pool-resize": ("pool", {"POST": {ADMIN}}),
    # Each user's own tokens (another's is 404 to them, tests/api/test_tokens.py); here, the
    # administrator's.
    "api:tokens": ("", {"GET": EVERYONE, "POST": EVERYONE}),
    "api:token": ("token", {"GET": EVERYONE, "DELETE": EVERYONE}),
    "api:webhooks": ("", {"GET": {ADMIN}, "POST": {ADMIN}}),
    "api:webhook": ("webhook", {"GET": {ADMIN}, "DELETE": {ADMIN}}),
    "api:webhook_deliveries": ("webhook", {"GET": {ADMIN}}),
    # Desktop agents only, with their endpoint's agent token (tests/api/test_agent_sessions.py):
    # no person's token or session is accepted there.
    "api:agent_sessions": ("", AGENTS_ONLY),
    # -- inventory, operations and audit log (read) ---------------------------------------
    "api:hypervisors": ("", {"GET": READERS}),
    "api:hypervisor": ("endpoint", {"GET": READERS}),
    "api:datastores": ("", {"GET": READERS}),
    "api:datastore": ("datastore", {"GET": READERS}),
    "api:images": ("", {"GET": READERS}),
    "api:image": ("image", {"GET": READERS}),
    "api:image_versions": ("", {"GET": READERS}),
    "api:image_version": ("version", {"GET": READERS}),
    "api:replicas": ("", {"GET": READERS}),
    "api:replica": ("replica", {"GET": READERS}),
    "api:desktops": ("", {"GET": EVERYONE}),  # helpdesk finds desktops (pools.view_desktop)
    "api:desktop": ("desktop", {"GET": EVERYONE}),
    "api:desktop_history": ("desktop", {"GET": EVERYONE}),
    "api:operations": ("", {"GET": READERS}),
    "api:operation": ("operation", {"GET": READERS}),
    "api:operation_desktops": ("operation", {"GET": READERS}),
    "api:audit": ("", {"GET": READERS}),
}
# Served to anyone, signed in or not: the schema and its reference page.
PUBLIC = {"api:schema", "api:docs"}


@pytest.fixture
def world(page_world, users, lab):  # noqa: F811 (page_world is the fixture imported above)
    """The pages' matrix world (a pool with desktops, a queued operation, a plan awaiting
    approval, a webhook), and what only the API reads."""
    return page_world | {
        "version": lab.v1,
        "datastore": lab.ds["ds-a"],
        "replica": Replica.objects.create(
            image_version=lab.v1, datastore=lab.ds["ds-a"], name="matrix-replica"
        ),
        "token": ApiToken.issue(users["admin"], "an administrator's")[0],
    }


def api_route_names(patterns=None, namespace="api") -> set[str]:
    """Every named route under the API's namespace, however deep its includes."""
    if patterns is None:
        patterns = next(
            p.url_patterns
            for p in get_resolver().url_patterns
            if getattr(p, "namespace", None) == "api"
        )
    names = set()
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            names |= api_route_names(pattern.url_patterns, namespace)
        elif pattern.name:
            names.add(f"{namespace}:{pattern.name}")
    return names


def test_every_api_route_is_in_the_matrix():
    assert api_route_names() - set(MATRIX) - PUBLIC == set(), "add these routes to the matrix"


@pytest.fixture
def tokens(users):
    return {role: ApiToken.issue(user, f"{role} matrix")[1] for role, user in users.items()}


@pytest.mark.parametrize("name", list(MATRIX))
def test_api_role_matrix(client, users, world, tokens, name):
    """One route, every role and method: each request is rolled back to a savepoint before
    the next, so each starts from the same world (built once per route: it is the slow part)."""
    spec, allowed_by_method = MATRIX[name]
    url = reverse(name, args=[world[a].pk for a in spec.split(",") if a])
    for role in ROLES:
        for method in METHODS:
            savepoint = transaction.savepoint()
            try:
                check(client, users, tokens, name, url, allowed_by_method, method, role)
            finally:
                transaction.savepoint_rollback(savepoint)
                queue().empty()


def check(client, users, tokens, name, url, allowed_by_method, method, role):
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {tokens[role]}"}
    before, audit_before = snapshot(), AuditEvent.objects.count()

    response = client.generic(method, url, "{}", "application/json", headers=headers)

    offered = method in allowed_by_method
    allowed = allowed_by_method.get(method, set())
    where = (name, method, role, response.status_code, response.content[:300])
    assert response.status_code < 500, where
    if allowed_by_method is AGENTS_ONLY:
        assert response.status_code == 401, where
        assert AuditEvent.objects.count() == audit_before and snapshot() == before
    elif role == "anonymous":
        assert response.status_code == 401, where
        assert response["Content-Type"] == "application/problem+json"
        assert AuditEvent.objects.count() == audit_before
        assert snapshot() == before
    elif not offered:
        # A role refused the route altogether hears 403 first; a role allowed hears 405.
        assert response.status_code in (403, 405), where
        assert snapshot() == before
    elif role in allowed:
        assert response.status_code not in (401, 403), where
    else:
        assert response.status_code == 403, where
        assert response["Content-Type"] == "application/problem+json"
        assert snapshot() == before
        new = list(AuditEvent.objects.order_by("-id")[: AuditEvent.objects.count() - audit_before])
        assert [e.outcome for e in new] == ["denied"], where
        assert new[0].actor_name == users[role].username
        # The audit log names the token the call came with.
        assert new[0].parameters.get("api_token", "").startswith(f"{role} matrix"), where
    if role not in allowed:
        assert queue().count == 0, where
