"""Sessions on vSphere from the desktops' agents, end to end: govmomi's vCenter simulator, a
real worker (with rq's scheduler, which brings parked desktops back), a live portal, and the
reference Linux agent (docs/agent/portal_agent.py) run as a subprocess posting its events.

vCenter cannot tell who is logged on; with the agents' reports a refresh under the "wait"
policy waits for the reported user, and for a desktop whose session is unknown, and goes on
once they report a logoff (or that nobody is on it)."""

import subprocess
import sys

import pytest

from composer import agent_sessions, services
from composer.models import DesktopTask, Operation
from pools.models import Pool
from tests.worker_processes import ROOT, errors, finish, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = ROOT / "docs" / "agent" / "portal_agent.py"
Status = Operation.Status
TaskStatus = DesktopTask.Status


def agent(live_server, token, command, desktop, *more):
    done = subprocess.run(
        [
            sys.executable,
            str(AGENT),
            command,
            "--url",
            live_server.url,
            "--token",
            token,
            "--config",
            "/nonexistent",
            "--desktop",
            desktop,
            "--verbose",
            *more,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def task_of(operation, name):
    return DesktopTask.objects.get(operation=operation, desktop_name=name)


def test_a_refresh_waits_for_the_users_the_agents_report(users, vsphere_lab, live_server):
    lab = vsphere_lab
    worker = start_worker(env=lab.env, scheduler=True)
    try:
        operation = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="Agents",
                naming_pattern="AGT-{n}",
                size=2,
                datastores=[lab.ds["LocalDS_0"]],
                image_version=lab.v1,
                overcommit=4,
            ),
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        pool = Pool.objects.get(name="Agents")
        token = agent_sessions.make_token(users["admin"], lab.endpoint)

        # AGT-1: ann logs on. AGT-2's agent never reports: its session is unknown.
        assert '"user": "ann"' in agent(live_server, token, "logon", "AGT-1", "--user", "ann")
        refresh = services.start_operation(users["admin"], pool, "refresh")

        def both_waiting():
            return all(
                task_of(refresh, name).status == TaskStatus.WAITING for name in ("AGT-1", "AGT-2")
            )

        wait_for(both_waiting, timeout=120)
        assert "ann" in task_of(refresh, "AGT-1").error
        assert "unknown" in task_of(refresh, "AGT-2").error

        # ann logs off: AGT-1 goes on at once (the report wakes it); AGT-2 still waits.
        agent(live_server, token, "logoff", "AGT-1")
        wait_for(lambda: task_of(refresh, "AGT-1").status == TaskStatus.SUCCEEDED, timeout=120)
        refresh.refresh_from_db()
        assert refresh.status == Status.RUNNING
        assert task_of(refresh, "AGT-2").status == TaskStatus.WAITING

        # AGT-2's agent reports that nobody is on it: the refresh completes.
        agent(live_server, token, "heartbeat", "AGT-2", "--user", "")
        assert finish(refresh).status == Status.SUCCEEDED, errors(refresh)
        assert lab.vc.folder_vms()["AGT-1"].current_snapshot == "vdiportal-checkpoint"
    finally:
        stop(worker)
