"""The terminal of `make run` stays readable (issue 10, items 16 and 17): a denial is one line
at INFO, polls are not logged, the banner with the logins comes again once the portal is up
(and on demand), and a second `make run` on the same port fails at once, starting nothing."""

import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from django.urls import reverse

from tests.resilience.test_make_run_restarts import answers, children, free_port
from tests.worker_processes import ROOT, wait_for


@pytest.mark.django_db
def test_a_denial_is_one_info_line_without_a_traceback(client, users, caplog):
    client.force_login(users["helpdesk"])
    with caplog.at_level(logging.DEBUG):
        assert client.get(reverse("pools:list")).status_code == 403
    lines = [r for r in caplog.records if r.name == "django.request"]
    assert len(lines) == 1
    assert (lines[0].levelname, lines[0].exc_info) == ("INFO", None)
    assert "Forbidden" in lines[0].getMessage()
    with caplog.at_level(logging.DEBUG):
        assert client.get("/no-such-page/").status_code == 404
    assert [r.levelname for r in caplog.records if r.name == "django.request"][-1] == "WARNING"


def portal_env(tmp_path, port):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SIMULATOR_REDIS_URL", "LOG_LEVEL")
    }
    env.update(PORTAL_DATA_DIR=str(tmp_path), PORT=str(port), SIMULATOR_STEP_SECONDS="0")
    return env


def test_make_run_terminal_banner_polls_and_a_second_run(tmp_path):
    port = free_port()
    env = portal_env(tmp_path, port)
    portal = subprocess.Popen(
        [sys.executable, "manage.py", "runportal"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(portal.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Portal is up" in line for line in lines), timeout=120, interval=0.5)
        assert answers(port)
        for _ in range(20):  # what the pages' htmx polls look like to the server
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10).close()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)
        before = set(children(portal.pid))

        second = subprocess.run(
            [sys.executable, "manage.py", "runportal"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert f"Port {port} on 127.0.0.1 is in use" in second.stderr, second.stderr
        assert "Demo logins" not in second.stdout and "rqworker" not in second.stdout
        assert set(children(portal.pid)) == before  # nothing restarted or added

        logins = subprocess.run(
            [sys.executable, "manage.py", "demo_logins"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert logins.returncode == 0 and "helpdesk" in logins.stdout, logins.stderr
    finally:
        if portal.poll() is None:
            os.killpg(portal.pid, 2)
        portal.wait(timeout=60)
        reader.join(timeout=10)
    output = "".join(lines)
    up = output.index("Portal is up")
    assert "Demo logins:" in output[up:] and "helpdesk" in output[up:], output
    assert output.count("GET /accounts/login/") == 0, output
    assert 'GET /no-such-page/ HTTP/1.1" 404' in output, output
    assert "Traceback" not in output, output
    assert "Job OK" not in output and "rq.worker" not in output, output  # rq's lines per job
