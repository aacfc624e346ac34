"""Browser tests: Playwright for Python driving Debian's Chromium against live_server.

They run whenever /usr/bin/chromium exists; with REQUIRE_BROWSER=1 (set by .ci/run) a
missing browser fails the run instead of skipping it. Jobs are run by a real `rqworker`
subprocess against the test database, with the simulator slow enough to watch.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    if shutil.which(CHROMIUM) and _playwright_importable():
        return
    reason = f"browser tests need {CHROMIUM} and the playwright package"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"REQUIRE_BROWSER=1 but {reason}")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


def _playwright_importable() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def page(monkeypatch):
    """A fresh Chromium page. Playwright is started and stopped per test: its sync API runs an
    event loop, under which Django refuses ORM calls, so it must not outlive the test."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(
            viewport={"width": 1280, "height": 860}, accept_downloads=True
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        page.close()  # before live_server and the database go away
        context.close()
        browser.close()


@pytest.fixture
def worker_step_seconds():
    """Simulator step time for the worker; a test overrides it to watch slower steps."""
    return 0.3


@pytest.fixture
def worker(transactional_db, settings, worker_step_seconds):
    """A real rq worker process on the test database and Redis, with visible step times."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] or "postgres"
        url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "SIMULATOR_STEP_SECONDS": str(worker_step_seconds),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "--with-scheduler", "default"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)
