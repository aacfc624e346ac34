"""The web server's log under LOG_FORMAT=json (issue 14, part 4): a real server process
(`manage.py runserver`, as tests/resilience/test_database_cut.py runs it), whose every log
line is one JSON object; an expected refusal is one line without a traceback, carrying the
request id the response names and the user; a real error is one line with its traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.test import Client

from portal.models import ApiToken
from tests.portal.test_logs import json_lines
from tests.static_files import collect_static
from tests.worker_processes import ROOT, database_url, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PORTS = range(24000, 24100)  # this test's share of the machine's ports


def a_free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 24000-24099")


@pytest.fixture
def server(tmp_path):
    port = a_free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.portal.server_error_settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,  # the sessions the test makes are valid there
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # DEBUG off: pages name the hashed static files of collectstatic's manifest.
        "STATIC_ROOT": str(collect_static(tmp_path / "static")),
    }
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,  # the banner; the log goes to stderr
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            urllib.request.urlopen(f"{base}/accounts/login/", timeout=5).close()
            return True
        except OSError:
            return process.poll() is not None  # died: the assertions below say so

    try:
        wait_for(up, timeout=120, interval=0.2)
        assert process.poll() is None, log.read_text()
        yield base, log
    finally:
        stop(process)


def fetch(url: str, headers: dict | None = None, data: bytes | None = None):
    """(status, X-Request-ID) of a request that may well be refused."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["X-Request-ID"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["X-Request-ID"]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_refusals_are_one_line_and_a_bug_keeps_its_traceback(server, users):
    base, log = server
    helpdesk = {"Cookie": session_cookie(users["helpdesk"])}
    _, secret = ApiToken.issue(users["helpdesk"], "script")

    seen = {}
    # A page the role may not see; the API refusing the same; an unknown page; a form posted
    # without its CSRF token; a Host the portal does not serve; and a bug.
    seen["page denied"] = fetch(f"{base}/pools/", helpdesk)
    seen["api denied"] = fetch(
        f"{base}/api/v1/hypervisors/",
        {"Authorization": f"Bearer {secret}", "X-Request-ID": "proxy-given.id_1"},
    )
    seen["not found"] = fetch(f"{base}/no-such-page/", helpdesk)
    seen["csrf"] = fetch(f"{base}/accounts/login/", data=b"username=x&password=y")
    seen["bad host"] = fetch(f"{base}/accounts/login/", {"Host": "evil.example"})
    seen["bug"] = fetch(f"{base}/boom/", {"X-Request-ID": "not a sane id!"})
    assert {what: status for what, (status, _) in seen.items()} == {
        "page denied": 403,
        "api denied": 403,
        "not found": 404,
        "csrf": 403,
        "bad host": 400,
        "bug": 500,
    }
    assert seen["api denied"][1] == "proxy-given.id_1"  # the proxy's id, kept
    assert seen["bug"][1] != "not a sane id!" and len(seen["bug"][1]) == 32  # replaced

    def lines_of(request_id):
        return [line for line in json_lines(log) if line.get("request_id") == request_id]

    # The server writes its lines as it answers: wait for the last one.
    wait_for(lambda: lines_of(seen["bug"][1]), timeout=30, interval=0.1)
    by_request = {what: lines_of(request_id) for what, (_, request_id) in seen.items()}
    for what, lines in by_request.items():
        assert len(lines) == 1, (what, lines)
    for what in ("page denied", "api denied", "not found", "csrf", "bad host"):
        line = by_request[what][0]
        assert "traceback" not in line, (what, line)
        assert line["level"] in ("INFO", "WARNING"), (what, line)
    assert by_request["page denied"][0]["user"] == "hal"
    assert by_request["api denied"][0]["user"] == "hal"
    assert by_request["not found"][0]["user"] == "hal"
    assert by_request["page denied"][0]["status"] == 403
    assert by_request["bad host"][0]["logger"] == "django.security.DisallowedHost"
    assert by_request["csrf"][0]["logger"] == "django.security.csrf"
    bug = by_request["bug"][0]
    assert (bug["level"], bug["status"]) == ("ERROR", 500)
    assert "RuntimeError: a bug\nover two lines" in bug["traceback"]
    assert "Traceback (most recent call last)" in bug["traceback"]
