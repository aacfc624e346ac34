"""Maintenance on a hypervisor that cannot tell who is logged on, from the agents' reports.

The simulator plays vCenter here: its driver is made to say it does not report sessions, so
wait_for_logoff goes by what the agent posted to /api/v1/agent/sessions (the same run on
govmomi's vCenter simulator, with the real agent, is tests/vsphere/test_agent_sessions.py).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from composer import agent_sessions, dispatch, services
from composer.drivers.simulator import SimulatorDriver
from composer.models import DesktopTask, Operation
from composer.services import Options
from pools.models import Desktop, Pool

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/agent/sessions"
Status = Operation.Status
TaskStatus = DesktopTask.Status


@pytest.fixture
def pool(users, lab, run_jobs, monkeypatch):
    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Agents",
            naming_pattern="AG-{n}",
            size=2,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    run_jobs()
    monkeypatch.setattr(SimulatorDriver, "reports_sessions", False)
    return Pool.objects.get(name="Agents")


@pytest.fixture
def agent(client, users, lab):
    secret = agent_sessions.make_token(users["admin"], lab.endpoint)

    def post(desktop, event, user=""):
        answer = client.post(
            URL,
            {"desktop": desktop, "event": event, "user": user},
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert answer.status_code == 200, answer.content
        return answer.json()

    return post


def go_on(operation, run_jobs):
    """What the scheduler does when a parked desktop is due: dispatch its endpoint again."""
    dispatch.dispatch(operation.pool.endpoint_id)
    run_jobs()
    operation.refresh_from_db()
    return operation


def test_wait_waits_for_the_reported_user_and_goes_on_at_the_logoff(users, pool, agent, run_jobs):
    agent("AG-1", "logon", "ann")
    agent("AG-2", "heartbeat")  # alive, nobody on it
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs()
    operation.refresh_from_db()
    waiting = operation.tasks.get(desktop_name="AG-1")
    assert operation.status == Status.RUNNING
    assert waiting.status == TaskStatus.WAITING and "ann" in waiting.error
    assert operation.tasks.get(desktop_name="AG-2").status == TaskStatus.SUCCEEDED

    agent("AG-1", "logoff")  # wakes the parked desktop: no wait for its next check
    waiting.refresh_from_db()
    assert waiting.retry_at <= timezone.now()
    assert go_on(operation, run_jobs).status == Status.SUCCEEDED


def test_an_unknown_session_is_waited_for_under_wait(users, pool, agent, run_jobs):
    agent("AG-2", "heartbeat")
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs()
    waiting = operation.tasks.get(desktop_name="AG-1")  # never reported
    assert waiting.status == TaskStatus.WAITING and "unknown" in waiting.error
    DesktopTask.objects.filter(pk=waiting.pk).update(retry_at=timezone.now())
    assert go_on(operation, run_jobs).status == Status.RUNNING  # still unknown: still waits


def test_force_warns_through_the_agent_then_goes_on_after_the_grace(users, pool, agent, run_jobs):
    agent("AG-1", "logon", "ann")
    options = Options(logoff_policy="force", warning_message="Back soon", grace_seconds=300)
    operation = services.start_operation(
        users["admin"], pool, "refresh", list(pool.desktops.filter(name="AG-1")), options
    )
    run_jobs()
    task = operation.tasks.get()
    assert task.status == TaskStatus.WAITING  # warned; the grace period runs
    actions = agent("AG-1", "heartbeat", "ann")["actions"]
    assert actions[0] == {"type": "message", "text": "Back soon"}
    assert actions[1]["type"] == "logoff" and 290 <= actions[1]["in_seconds"] <= 300
    assert agent("AG-1", "heartbeat", "ann")["actions"] == []  # handed over once

    DesktopTask.objects.filter(pk=task.pk).update(retry_at=timezone.now())  # grace over
    assert go_on(operation, run_jobs).status == Status.SUCCEEDED
    desktop = Desktop.objects.get(name="AG-1")
    assert desktop.agent_actions == [] and desktop.session_user == ""


def test_force_on_an_unknown_session_warns_and_goes_on(users, pool, agent, run_jobs):
    options = Options(logoff_policy="force", grace_seconds=60)
    operation = services.start_operation(
        users["admin"], pool, "refresh", list(pool.desktops.filter(name="AG-1")), options
    )
    run_jobs()
    task = operation.tasks.get()
    assert task.status == TaskStatus.WAITING
    assert Desktop.objects.get(name="AG-1").agent_actions  # left for the agent
    DesktopTask.objects.filter(pk=task.pk).update(retry_at=timezone.now())
    assert go_on(operation, run_jobs).status == Status.SUCCEEDED


def test_without_an_agent_token_nothing_is_waited_for(users, pool, run_jobs):
    # As before agents existed: nobody reports sessions there, the forms say so.
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED


def test_pages_show_an_unknown_session(users, pool, agent, client):
    agent("AG-2", "logon", "bob")
    client.force_login(users["admin"])
    page = client.get(f"/pools/{pool.pk}/").content.decode()
    assert page.count("session-unknown") == 1  # AG-1 only
    assert ">bob<" in page
    one = Desktop.objects.get(name="AG-1")
    assert "session-unknown" in client.get(f"/desktops/{one.pk}/").content.decode()
    found = client.get("/helpdesk/", {"q": "AG-"}).content.decode()
    assert found.count("session-unknown") == 1
