"""Logs an operator can use (issue 14, part 4): under LOG_FORMAT=json every line a worker
writes is one JSON object, and an operation's whole life is found by its id, with the id of
the request that asked for it. (The web server's lines: test_request_logs.py.)"""

from __future__ import annotations

import json

import pytest

from composer.models import DesktopTask, Operation
from pools.models import Pool
from portal.models import ApiToken
from tests import factories
from tests.worker_processes import finish, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

Status = Operation.Status


def json_lines(path) -> list[dict]:
    """Every line of the file as JSON: a line that is not fails the test, naming it."""
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not text:
            continue
        try:
            line = json.loads(text)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {text!r}")
        assert isinstance(line, dict), text
        assert {"time", "level", "logger", "message"} <= set(line), text
        lines.append(line)
    return lines


@pytest.fixture
def pool(users, lab, run_jobs):
    """A provisioned pool of 5 desktops (provisioned in this process)."""
    factories.requested_pool(users["admin"], lab, "Logs", "LOG-{n:fixed=2}", 5)
    run_jobs()
    return Pool.objects.get(name="Logs")


def test_a_workers_lines_are_json_and_an_operation_is_found_by_its_id(
    client, users, lab, pool, tmp_path
):
    _, secret = ApiToken.issue(users["admin"], "script")
    # One desktop at a time: the job carries on with the next desktops (composer/jobs.py),
    # and its lines must name each desktop in turn.
    Pool.objects.filter(pk=pool.pk).update(max_concurrent_maintenance=1)
    lab.sim.fail_desktop("LOG-03", "revert")
    response = client.post(
        f"/api/v1/pools/{pool.pk}/operations/",
        data=json.dumps({"kind": "refresh", "logoff_policy": "force", "grace_seconds": 0}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "script-run-42"},
    )
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "script-run-42"
    operation = Operation.objects.get(pool=pool, kind="refresh")

    output = tmp_path / "worker.log"
    with output.open("w") as file:
        worker = start_worker(env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}, output=file)
        try:
            finish(operation)
        finally:
            stop(worker)
    assert operation.status == Status.PARTIALLY_FAILED

    lines = json_lines(output)
    ours = [line for line in lines if line.get("operation_id") == operation.pk]
    messages = [line["message"] for line in ours]
    assert any(m.startswith(f"operation {operation.pk} started: refresh") for m in messages)
    ended = [line for line in ours if line["message"].startswith(f"operation {operation.pk} ended")]
    assert len(ended) == 1
    assert "partially_failed" in ended[0]["message"] and "4 succeeded" in ended[0]["message"]

    tasks = dict(operation.tasks.values_list("desktop_name", "desktop_id"))
    ends = {}
    for name, desktop_id in tasks.items():
        end = [
            line
            for line in ours
            if line.get("desktop_id") == desktop_id
            and line["message"].startswith(f"desktop {name} ")
            and ("succeeded" in line["message"] or "failed" in line["message"])
        ]
        assert len(end) == 1, (name, messages)
        ends[name] = end[0]
        assert end[0]["desktop"] == name
        if name == "LOG-03":
            assert end[0]["level"] == "WARNING"
            assert end[0]["message"].startswith("desktop LOG-03 failed: revert")
        else:
            assert end[0]["message"] == f"desktop {name} succeeded"
    # Some job ran several desktops, each line naming its own.
    assert len({end["job_id"] for end in ends.values()}) < len(ends)
    # Every line of the operation's jobs carries the request that asked for it, and the job
    # and worker that wrote it.
    assert {line.get("request_id") for line in ours} == {"script-run-42"}
    desktop_lines = [line for line in ours if "desktop_id" in line]
    assert all(line.get("job_id") and line.get("worker") for line in desktop_lines)
    assert set(operation.tasks.values_list("status", flat=True)) == {
        DesktopTask.Status.SUCCEEDED,
        DesktopTask.Status.FAILED,
    }
    # rq's own lines come through the same formatter.
    assert any(line["logger"].startswith("rq.") for line in lines)
