"""Every endpoint x every role, GET and POST, enforced on the server.

Allowed: the page answers (not 403), and a GET shows that page (its heading) with what that
role may do on it and nothing it may not (PAGES). Forbidden: 403 for a signed-in user (a
redirect to the login page for anonymous), nothing written but a "denied" audit event,
nothing enqueued.
A new URL without a row here fails test_every_endpoint_is_in_the_matrix.
"""

import re

import pytest
from django.urls import get_resolver, reverse

from audit.models import AuditEvent
from composer import services
from composer.models import DesktopTask, Operation, Webhook, WebhookDelivery
from composer.queue import queue
from pools.models import (
    Datastore,
    Desktop,
    HypervisorEndpoint,
    ImageVersion,
    PersistentDisk,
    Pool,
    PoolDatastore,
    Replica,
)

pytestmark = pytest.mark.django_db

ADMIN, HELPDESK, AUDITOR = "admin", "helpdesk", "auditor"
EVERYONE = {ADMIN, HELPDESK, AUDITOR}
READERS = {ADMIN, AUDITOR}
ROLES = [ADMIN, HELPDESK, AUDITOR, "anonymous"]

# URL name -> (how to build its arguments, roles allowed to GET, roles allowed to POST).
# None for a method means the endpoint does not offer it (405 for everyone).
MATRIX = {
    "dashboard": ("", EVERYONE, EVERYONE),
    # Each user's own time zone.
    "preferences": ("", EVERYONE, EVERYONE),
    # Each user's own API tokens; every user's: administrators.
    "tokens": ("", EVERYONE, EVERYONE),
    "tokens_all": ("", {ADMIN}, {ADMIN}),
    # Auditors read everything: they see the helpdesk search, without its actions.
    "helpdesk": ("", EVERYONE, EVERYONE),
    "helpdesk_confirm": ("desktop:refresh", {ADMIN, HELPDESK}, {ADMIN, HELPDESK}),
    "audit": ("", READERS, READERS),
    "audit_export": ("", READERS, READERS),
    "pools:list": ("", READERS, READERS),
    "pools:create": ("", {ADMIN}, {ADMIN}),
    "pools:detail": ("pool", READERS, READERS),
    "pools:live": ("pool", READERS, READERS),
    "pools:operate": ("pool:rebalance", {ADMIN}, {ADMIN}),
    "pools:operate single refresh": ("pool:refresh?one", {ADMIN, HELPDESK}, {ADMIN, HELPDESK}),
    "pools:operate pool refresh": ("pool:refresh", {ADMIN}, {ADMIN}),
    "pools:operate single reset": ("pool:reset?one", {ADMIN, HELPDESK}, {ADMIN, HELPDESK}),
    "pools:operate pool reset": ("pool:reset", {ADMIN}, {ADMIN}),
    "pools:pool_datastores": ("pool", {ADMIN}, {ADMIN}),
    "pools:resize": ("pool", {ADMIN}, {ADMIN}),
    "pools:desktop": ("desktop", EVERYONE, EVERYONE),
    "pools:datastores": ("", READERS, READERS),
    "pools:images": ("", READERS, READERS),
    "pools:image_version_add": ("image", None, {ADMIN}),
    "pools:hypervisors": ("", READERS, READERS),
    "pools:hypervisor_test": ("endpoint", None, {ADMIN}),
    "pools:hypervisor_sync": ("endpoint", None, {ADMIN}),
    "pools:hypervisor_agent_token": ("endpoint", None, {ADMIN}),
    "composer:operations": ("", READERS, READERS),
    "composer:operation": ("operation", READERS, READERS),
    "composer:plan": ("draft", READERS, READERS),
    "composer:approve": ("draft", None, {ADMIN}),
    "composer:discard": ("draft", None, {ADMIN}),
    "composer:cancel": ("operation", {ADMIN}, {ADMIN}),  # GET asks to confirm
    "composer:pause": ("operation", None, {ADMIN}),
    "composer:resume": ("operation", None, {ADMIN}),
    # Webhooks: administrators only, reading included.
    "webhooks:list": ("", {ADMIN}, {ADMIN}),
    "webhooks:create": ("", {ADMIN}, {ADMIN}),
    "webhooks:detail": ("webhook", {ADMIN}, {ADMIN}),
    "webhooks:rotate": ("webhook", None, {ADMIN}),
    "webhooks:test": ("webhook", None, {ADMIN}),
    "webhooks:delete": ("webhook", {ADMIN}, {ADMIN}),  # GET asks to confirm
}
# Not the portal's own pages: sign-in and out, Django's admin and django-rq's (staff only);
# /healthz and /metrics, for machines, with no sign-in (test_healthz.py, test_metrics.py).
OUTSIDE = {"login", "logout", "healthz", "metrics"}
# Pages of an object its user owns: someone else's is 404 (its id reveals nothing), not 403,
# so they have tests of their own per role.
OWN_OBJECTS = {"token_revoke": "tests/portal/test_token_pages.py"}

# What a role allowed to GET a page finds there: the page's heading (an <h1>, or an <h2> for
# a live part; the first line for a CSV), then markup that only the listed roles get (their
# actions), which the other allowed roles must not get. A page sent elsewhere: "-> url name".
PAGES = {
    "dashboard": ("Dashboard", {}),
    "dashboard helpdesk": ("-> helpdesk", {}),  # the helpdesk's home is its search
    "preferences": ("Preferences", {}),
    "tokens": ("API tokens", {'href="/accounts/tokens/all/"': {ADMIN}}),
    "tokens_all": ("Every user's API tokens", {}),
    "helpdesk": ("Helpdesk", {}),
    "helpdesk_confirm": ("Refresh MX-1?", {}),
    "audit": ("Audit log", {}),
    "audit_export": ("when,who,role,action,", {}),
    "pools:list": ("Pools", {}),
    "pools:create": ("New pool", {}),
    "pools:detail": (
        "Pool Matrix",
        {">Rebalance</button>": {ADMIN}, '/resize/">Resize</a>': {ADMIN}},
    ),
    "pools:live": ("Recent operations", {}),
    "pools:operate": ("Rebalance pool Matrix", {}),
    "pools:operate single refresh": ("Refresh desktop MX-1", {}),
    "pools:operate pool refresh": ("Refresh pool Matrix", {}),
    "pools:operate single reset": ("Reset desktop MX-1", {}),
    "pools:operate pool reset": ("Reset pool Matrix", {}),
    "pools:pool_datastores": ("Datastores of", {}),
    "pools:resize": ("Resize Matrix", {}),
    "pools:desktop": ("Desktop MX-1", {">Audit events</h2>": READERS}),
    "pools:datastores": ("Datastores", {}),
    "pools:images": ("Images", {">Register</button>": {ADMIN}}),
    "pools:hypervisors": ("Hypervisors", {">Test connection</button>": {ADMIN}}),
    "composer:operations": ("Operations", {}),
    "composer:operation": ("Provision", {'/cancel/">Cancel': {ADMIN}}),
    "composer:plan": ("Plan: Rebalance", {">Approve and run</button>": {ADMIN}}),
    "composer:cancel": ("Cancel Provision Matrix #", {}),
    "webhooks:list": ("Webhooks", {}),
    "webhooks:create": ("New webhook", {}),
    "webhooks:detail": ("Webhook Matrix hook", {}),
    "webhooks:delete": ("Delete webhook Matrix hook?", {}),
}


@pytest.fixture
def world(users, lab):
    """A pool with desktops, a queued operation and a plan awaiting approval (no worker runs,
    so nothing changes behind the test's back)."""
    operation = services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Matrix",
            naming_pattern="MX-{n}",
            size=3,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    pool = operation.pool
    draft = services.plan_operation(users["admin"], pool, "rebalance")
    queue().empty()
    return {
        "pool": pool,
        "desktop": pool.desktops.first(),
        "operation": operation,
        "draft": draft,
        "endpoint": lab.endpoint,
        "image": lab.v1.image,
        "webhook": Webhook.objects.create(
            name="Matrix hook", url="https://hooks.example.com/", events=["operation.started"]
        ),
    }


def url_for(name, spec, world):
    name = name.split(" ")[0]
    if not spec:
        return reverse(name)
    obj, _, rest = spec.partition(":")
    kind, _, query = rest.partition("?")
    args = [world[obj].pk] + ([kind] if kind else [])
    url = reverse(name, args=args)
    if query == "one":
        url += f"?desktop={world['desktop'].pk}&selection=1"
    return url


def snapshot():
    return {
        model.__name__: model.objects.count()
        for model in (
            Pool,
            Desktop,
            Operation,
            DesktopTask,
            PoolDatastore,
            PersistentDisk,
            Replica,
            Datastore,
            ImageVersion,
            Webhook,
            WebhookDelivery,
        )
    } | {
        "statuses": sorted(Operation.objects.values_list("pk", "status")),
        # What a sync writes on the endpoint row.
        "syncs": sorted(HypervisorEndpoint.objects.values_list("pk", "synced_at", "sync_error")),
    }


def test_every_endpoint_is_in_the_matrix():
    names = set()
    for pattern in get_resolver().url_patterns:
        namespace = getattr(pattern, "namespace", None)
        if namespace in ("admin", "django_rq") or str(pattern.pattern).startswith("admin/"):
            continue
        if namespace == "api":  # tests/api/test_api_role_matrix.py
            continue
        if namespace:
            names |= {f"{namespace}:{p.name}" for p in pattern.url_patterns if p.name}
        elif pattern.name:
            names.add(pattern.name)
    covered = {name.split(" ")[0] for name in MATRIX} | OUTSIDE | set(OWN_OBJECTS)
    assert names - covered == set(), "add these endpoints to the role matrix"


def test_every_page_says_what_its_allowed_roles_find_on_it():
    pages = {name for name, (_, get_roles, _) in MATRIX.items() if get_roles}
    assert pages - set(PAGES) == set(), "say in PAGES what these pages show"


def assert_shows_the_page(name, role, response):
    heading, only = PAGES.get(f"{name} {role}") or PAGES[name]
    if heading.startswith("-> "):
        assert response.status_code == 302, (name, role)
        assert response["Location"] == reverse(heading[3:]), (name, role)
        return
    assert response.status_code == 200, (name, role, response.status_code)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    page = body.decode()
    if response["Content-Type"].startswith("text/csv"):
        assert page.startswith(heading), (name, role)
        return
    headings = [
        re.sub(r"<[^>]+>", "", h).strip()
        for h in re.findall(r"<h[12][^>]*>(.*?)</h[12]>", page, re.S)
    ]
    assert any(h.startswith(heading) for h in headings), (name, role, headings)
    for markup, roles in only.items():
        assert (markup in page) == (role in roles), (name, role, markup)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("name", list(MATRIX))
def test_role_matrix(client, users, world, name, method, role):
    spec, get_roles, post_roles = MATRIX[name]
    allowed = get_roles if method == "GET" else post_roles
    url = url_for(name, spec, world)
    if allowed is None:
        # An action that only POST starts: a GET changes nothing, whoever asks.
        if role != "anonymous":
            client.force_login(users[role])
        before = snapshot()
        response = client.get(url)
        assert response.status_code in (302, 403, 405) and snapshot() == before
        assert queue().count == 0
        return
    if role != "anonymous":
        client.force_login(users[role])
    before, audit_before = snapshot(), AuditEvent.objects.count()

    # Forms take the selected desktop from the body on POST, from the query on GET.
    data = {"desktop": world["desktop"].pk, "selection": "1"} if "?one" in spec else {}
    response = client.get(url) if method == "GET" else client.post(url, data)

    if role == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        assert AuditEvent.objects.count() == audit_before
        assert snapshot() == before
    elif role in allowed:
        assert response.status_code != 403, (name, method, role)
        assert response.status_code < 500
        if method == "GET":
            assert_shows_the_page(name, role, response)
    else:
        assert response.status_code == 403, (name, method, role, response.status_code)
        assert snapshot() == before
        new = AuditEvent.objects.filter(pk__gt=0).order_by("-id")[
            : AuditEvent.objects.count() - audit_before
        ]
        assert [e.outcome for e in new] == ["denied"]
        assert new[0].actor_name == users[role].username
    if role not in (allowed or set()):
        assert queue().count == 0
