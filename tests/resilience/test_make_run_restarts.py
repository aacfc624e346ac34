"""`make run` starts a crashed child again instead of stopping the whole portal (issue 9,
item 5). Runs `manage.py runportal` as `make run` does, on its embedded defaults in a folder
of its own, and kills its worker and its web server outright."""

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.worker_processes import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is pid: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def child(pid: int, marker: str) -> int | None:
    for child_pid, cmdline in children(pid).items():
        if marker in cmdline:
            return child_pid
    return None


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_a_killed_worker_or_web_server_is_started_again(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SIMULATOR_REDIS_URL")
    }
    env.update(PORTAL_DATA_DIR=str(tmp_path), PORT=str(port), LOG_LEVEL="WARNING")
    portal = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--no-demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers(port), timeout=120, interval=0.5)
        worker = child(portal.pid, "rqworker")
        web = child(portal.pid, "runserver")
        assert worker and web

        os.killpg(worker, signal.SIGKILL)
        new_worker = wait_for(
            lambda: (pid := child(portal.pid, "rqworker")) not in (None, worker) and pid,
            timeout=30,
        )
        os.killpg(web, signal.SIGKILL)
        wait_for(lambda: child(portal.pid, "runserver") not in (None, web), timeout=30)
        wait_for(lambda: answers(port), timeout=60, interval=0.5)

        assert portal.poll() is None
        assert child(portal.pid, "rqworker") == new_worker
    finally:
        if portal.poll() is None:
            os.killpg(portal.pid, signal.SIGINT)
        output, _ = portal.communicate(timeout=60)
    assert "worker exited with code -9; starting it again" in output, output
    assert "web exited with code -9; starting it again" in output, output
    assert portal.returncode == 0, output
