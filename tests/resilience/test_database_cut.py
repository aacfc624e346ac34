"""The database cut for 30 s in the middle of an operation (issue 9, item 3).

A real web server, worker and cron process reach PostgreSQL through a proxy the test cuts
(tests/tcp_proxy.py): the shared server itself is never stopped. While it is cut, pages
answer 503 with the portal's own page and every process stays up; once it is back, the
operation completes and the dashboard says the database was unreachable and work resumed.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from composer import outages, services
from composer.models import DesktopTask, Operation
from pools.states import BUSY, DesktopState
from tests.static_files import collect_static
from tests.tcp_proxy import TcpProxy
from tests.worker_processes import (
    ROOT,
    database_url,
    errors,
    finish,
    start_cron,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

CUT_SECONDS = 30


@pytest.fixture
def proxy():
    if connection.vendor != "postgresql":
        pytest.skip("cuts a network connection to PostgreSQL")
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    return collect_static(tmp_path_factory.mktemp("static"))


def start_web(port: int, database: str, static_root) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "false",
        "STATIC_ROOT": str(static_root),
        # The session the test signed in with is only valid under the same key.
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "CRITICAL",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def get(port: int, path: str, session: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_thirty_seconds_without_the_database_mid_operation(
    users, make_pool, run_jobs, proxy, static_root
):
    pool = make_pool("Cut", "CUT-{n}", 4)
    run_jobs()
    signed_in = Client()
    signed_in.force_login(users["admin"])
    session = signed_in.cookies[settings.SESSION_COOKIE_NAME].value

    through_proxy = database_url(port=proxy.port)
    web_port = _free_port()
    web = start_web(web_port, through_proxy, static_root)
    worker = start_worker(step_seconds=0.5, scheduler=True, database=through_proxy)
    cron = start_cron(every_seconds=2, database=through_proxy)
    try:
        wait_for(lambda: get(web_port, "/", session)[0] == 200, timeout=60, interval=0.5)
        assert "Dashboard" in get(web_port, "/", session)[1]  # signed in, not the login page
        operation = services.start_operation(users["admin"], pool, "refresh")
        wait_for(
            lambda: operation.tasks.filter(status=DesktopTask.Status.RUNNING).exists(),
            timeout=60,
        )

        proxy.cut()
        cut_at = time.monotonic()
        status, body = get(web_port, "/", session)
        assert status == 503, body[:500]
        assert "The database is unreachable" in body
        assert "Server Error" not in body
        time.sleep(max(0, CUT_SECONDS - (time.monotonic() - cut_at)))
        for name, process in (("web", web), ("worker", worker), ("cron", cron)):
            assert process.poll() is None, f"the {name} process exited while the database was cut"

        proxy.restore()
        finish(operation, timeout=180)
        assert operation.status == Operation.Status.SUCCEEDED, errors(operation)
        assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
        assert not pool.desktops.filter(state__in=BUSY).exists()

        status, body = get(web_port, "/", session)
        assert status == 200
        assert "The database was unreachable from" in body
        assert "Work paused meanwhile and resumed" in body
        assert worker.poll() is None and cron.poll() is None and web.poll() is None
    finally:
        proxy.restore()
        for process in (web, worker, cron):
            stop(process)
        outages_noted_in_redis().delete(outages.KEY)  # other tests' dashboards stay clean


def outages_noted_in_redis():
    import django_rq

    return django_rq.get_connection("default")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
