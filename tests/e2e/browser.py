"""Small helpers for the browser tests."""

import os
from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def login(page, live_server, username, password):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def shot(page, name):
    """Retake README's screenshot `name`, only on request (`SCREENSHOTS=1 make test`): a
    test run must not rewrite tracked files."""
    if os.environ.get("SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_until(page, predicate, timeout=120.0, interval=0.25):
    """Poll a Python predicate while the page keeps running (the CSP forbids the eval that
    Playwright's wait_for_function needs)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        page.wait_for_timeout(interval * 1000)
    raise AssertionError("timed out waiting in the browser")


def finished(operation, timeout=120.0):
    """Wait for an operation to end (its final status, in the database: what the tests
    assert, never text on a page that can appear early); returns it, refreshed."""
    import time

    from composer.models import Operation

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operation.refresh_from_db()
        if operation.status in Operation.FINISHED:
            return operation
        time.sleep(0.2)
    raise AssertionError(f"{operation} still {operation.status}")
