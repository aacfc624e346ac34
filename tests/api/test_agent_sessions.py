"""POST /api/v1/agent/sessions: the agent token's scope, what a report changes, bad input."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from composer import agent_sessions
from composer.models import DesktopTask
from pools import sessions
from pools.models import Desktop
from pools.states import DesktopState
from portal.api.agent import AgentThrottle
from portal.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db

URL = "/api/v1/agent/sessions"
LOGOFF = {"desktop": "VC-A-1", "event": "logoff"}


@pytest.fixture
def estate(users):
    """Two vSphere endpoints (the API never reaches them), each with a pool of one desktop
    that is powered on, and an agent token for the first."""
    out = {}
    for name in ("vc-a", "vc-b"):
        endpoint = factories.endpoint(name, driver="vsphere")
        ds = factories.datastore(endpoint, f"{name}-ds")
        version = factories.version(factories.image(endpoint))
        pool = factories.pool(f"Pool-{name}", version, [ds])
        factories.desktop(pool, f"{name.upper()}-1", ds, state=DesktopState.AVAILABLE)
        out[name] = endpoint
    out["secret"] = agent_sessions.make_token(users["admin"], out["vc-a"])
    return out


def post(client, secret, body, **headers):
    return client.post(
        URL,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", **headers},
    )


def test_logon_then_logoff_moves_the_session_and_the_state(client, estate):
    answer = post(client, estate["secret"], {"desktop": "VC-A-1", "event": "logon", "user": "ann"})
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"desktop": "VC-A-1", "user": "ann", "ignored": False, "actions": []}
    desktop = Desktop.objects.get(name="VC-A-1")
    assert (desktop.session_user, desktop.state) == ("ann", DesktopState.CONNECTED)
    assert sessions.session_of(desktop, reports_sessions=False).status == sessions.USER

    assert post(client, estate["secret"], LOGOFF).status_code == 200
    desktop.refresh_from_db()
    assert (desktop.session_user, desktop.state) == ("", DesktopState.AVAILABLE)
    assert sessions.session_of(desktop, reports_sessions=False).status == sessions.NOBODY


def test_an_event_older_than_the_last_report_is_ignored(client, estate):
    now = timezone.now()
    late = {"desktop": "VC-A-1", "event": "logon", "user": "ann", "at": now.isoformat()}
    assert post(client, estate["secret"], late).json()["ignored"] is False
    early = {"desktop": "VC-A-1", "event": "logoff", "at": (now - timedelta(1)).isoformat()}
    answer = post(client, estate["secret"], early)
    assert answer.status_code == 200
    assert answer.json()["ignored"] is True and "older" in answer.json()["note"]
    assert Desktop.objects.get(name="VC-A-1").session_user == "ann"


def test_the_agent_token_works_nowhere_else_and_a_user_token_not_here(client, estate, users):
    refused = client.get("/api/v1/pools/", headers={"Authorization": f"Bearer {estate['secret']}"})
    assert refused.status_code == 401
    assert refused["Content-Type"] == "application/problem+json"
    _, personal = ApiToken.issue(users["admin"], "pipeline")
    answer = post(client, personal, {"desktop": "VC-A-1", "event": "logoff"})
    assert answer.status_code == 401 and answer.json()["type"] == "not-authenticated"
    client.force_login(users["admin"])  # nor a signed-in administrator's browser
    assert client.post(URL, {}, content_type="application/json").status_code == 401
    assert Desktop.objects.get(name="VC-A-1").session_reported_at is None


def test_a_made_again_token_replaces_the_old_one(client, estate, users):
    new = agent_sessions.make_token(users["admin"], estate["vc-a"])
    assert (
        post(client, estate["secret"], {"desktop": "VC-A-1", "event": "logoff"}).status_code == 401
    )
    assert post(client, new, {"desktop": "VC-A-1", "event": "logoff"}).status_code == 200
    made = AuditEvent.objects.filter(action=agent_sessions.MAKE_TOKEN)
    assert made.count() == 2
    # The audit log names the token by its prefix, never its secret.
    assert all(new not in str(e.parameters) for e in made)
    assert made.order_by("-id")[0].parameters["token"] == new.split("_")[1] + "…"


def test_only_an_administrator_makes_a_token(estate, users):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        agent_sessions.make_token(users["helpdesk"], estate["vc-b"])
    assert AuditEvent.objects.filter(action=agent_sessions.MAKE_TOKEN, outcome="denied").exists()


def test_a_desktop_of_another_endpoint_is_refused_and_audited(client, estate):
    answer = post(client, estate["secret"], {"desktop": "VC-B-1", "event": "logon", "user": "x"})
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/problem+json"
    assert Desktop.objects.get(name="VC-B-1").session_user == ""
    refusal = AuditEvent.objects.get(action=agent_sessions.REFUSED)
    assert refusal.outcome == "denied" and refusal.target_name == "VC-B-1"
    assert refusal.parameters["endpoint"] == "vc-a"


@pytest.mark.parametrize(
    "body",
    [
        {"desktop": "VC-A-1", "event": "reboot"},
        {"desktop": "VC-A-1", "event": "logon"},  # a logon names its user
        {"desktop": "VC-A\x00-1", "event": "logoff"},
        {"desktop": "VC-A-1", "event": "logon", "user": "ann\x00"},
        {"desktop": "VC-A-1", "event": "logoff", "at": "yesterday"},
        {"desktop": "X" * 100, "event": "logoff"},
        {"desktop": ["VC-A-1"], "event": "logoff"},
        {"event": "logoff"},
        ["not", "an", "object"],
        "just a string",
        {"desktop": "VC-A-1", "event": "logon", "user": "u" * 151},
    ],
)
def test_bad_reports_are_400_problems(client, estate, body):
    answer = post(client, estate["secret"], body)
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/problem+json"


def test_an_unknown_desktop_a_broken_body_and_a_huge_one(client, estate):
    answer = post(client, estate["secret"], {"desktop": "NOPE-1", "event": "logoff"})
    assert answer.status_code == 404 and answer.json()["type"] == "not-found"
    broken = client.post(
        URL,
        b'{"desktop": "VC-A-1", "ev',
        content_type="application/json",
        headers={"Authorization": f"Bearer {estate['secret']}"},
    )
    assert broken.status_code == 400 and broken["Content-Type"] == "application/problem+json"
    huge = {"desktop": "VC-A-1", "event": "logon", "user": "ann", "pad": "x" * 5_000_000}
    answer = post(client, estate["secret"], huge)
    assert answer.status_code == 413 and answer["Content-Type"].endswith("problem+json")
    assert Desktop.objects.get(name="VC-A-1").session_user == ""


@pytest.mark.parametrize("header", ["Bearer", "Bearer lca_", "Bearer lca_x_y", "Bearer \u00e9"])
def test_bad_agent_tokens_are_401(client, estate, header):
    answer = client.post(
        URL,
        {"desktop": "VC-A-1", "event": "logoff"},
        "application/json",
        headers={"Authorization": header},
    )
    assert answer.status_code == 401 and answer["Content-Type"] == "application/problem+json"


def test_reports_are_rate_limited(client, estate, monkeypatch):
    monkeypatch.setattr(AgentThrottle, "rate", "3/minute", raising=False)
    codes = [
        post(client, estate["secret"], {"desktop": "VC-A-1", "event": "heartbeat"}).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    last = post(client, estate["secret"], {"desktop": "VC-A-1", "event": "heartbeat"})
    assert last["Content-Type"] == "application/problem+json" and "Retry-After" in last


def test_the_agent_receives_a_warning_and_the_logoff_once(client, estate):
    grace_ends = timezone.now() + timedelta(seconds=120)
    Desktop.objects.filter(name="VC-A-1").update(
        agent_actions=sessions.warning_actions("Back in 2 minutes", grace_ends)
    )
    answer = post(
        client, estate["secret"], {"desktop": "VC-A-1", "event": "heartbeat", "user": "ann"}
    )
    actions = answer.json()["actions"]
    assert actions[0] == {"type": "message", "text": "Back in 2 minutes"}
    assert actions[1]["type"] == "logoff" and 100 <= actions[1]["in_seconds"] <= 120
    again = post(
        client, estate["secret"], {"desktop": "VC-A-1", "event": "heartbeat", "user": "ann"}
    )
    assert again.json()["actions"] == []


def test_expired_requests_are_not_handed_over():
    long_ago = timezone.now() - timedelta(hours=1)
    assert sessions.handed_over(sessions.warning_actions("old", long_ago), timezone.now()) == []
    assert sessions.handed_over([{"type": "logoff"}, "junk", None], timezone.now()) == []
    assert sessions.handed_over("not a list", timezone.now()) == []


def test_a_logoff_wakes_a_desktop_waiting_for_its_user(client, estate, users):
    desktop = Desktop.objects.get(name="VC-A-1")
    operation = factories.operation(desktop.pool, users["admin"])
    later = timezone.now() + timedelta(minutes=5)
    task = factories.task(
        operation, desktop, status="waiting", step="wait_for_logoff", retry_at=later
    )
    assert post(client, estate["secret"], LOGOFF).status_code == 200
    task.refresh_from_db()
    assert task.retry_at <= timezone.now()
    assert DesktopTask.objects.get(pk=task.pk).status == "waiting"  # the dispatcher takes it on


def test_the_hypervisors_page_makes_a_token_shown_once(client, estate, users):
    client.force_login(users["admin"])
    endpoint = estate["vc-b"]
    page = client.post(f"/hypervisors/{endpoint.pk}/agent-token/")
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    secret = re.search(r'id="agent-token">(lca_[^<]+)<', page.content.decode())[1]
    answer = post(client, secret, {"desktop": "VC-B-1", "event": "heartbeat"})
    assert answer.status_code == 200
    listed = client.get("/hypervisors/").content.decode()
    assert secret not in listed and f"lca_{secret.split('_')[1]}…" in listed
