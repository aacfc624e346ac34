"""/healthz for load balancers (portal/health.py): 200 only when the database, Redis, a live
worker, rq's scheduler and a recent reconciler run are all there, 503 naming what is not,
with real worker and cron processes; no sign-in, nothing else in the answer."""

import socket
import time

import pytest
from django.test import Client

from audit.models import AuditEvent
from portal import health
from tests.worker_processes import start_cron, start_worker, stop, wait_for

CHECKS = {"database", "redis", "workers", "scheduler", "reconciler"}


def probe(client=None):
    response = (client or Client()).get("/healthz")
    body = response.json()
    # Nothing but each check's name and whether it passed.
    assert set(body) == {"status", "checks"}
    assert set(body["checks"]) == CHECKS
    assert all(value in (True, False) for value in body["checks"].values())
    assert body["status"] == ("ok" if response.status_code == 200 else "failing")
    assert response.status_code in (200, 503)
    return response.status_code, {name for name, ok in body["checks"].items() if not ok}


def probe_until(expected_status, expected_failing, timeout=120):
    """Probe until the answer is the one expected (processes take a moment to start or
    stop), and return it; the last answer seen in the assertion's message otherwise."""
    seen = []

    def answered():
        seen.append(probe())
        return seen[-1] == (expected_status, expected_failing)

    try:
        wait_for(answered, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(
            f"expected {expected_status} failing {expected_failing}; last {seen[-1:]}"
        ) from None


@pytest.mark.django_db
def test_with_nothing_running_it_is_503_naming_worker_scheduler_and_reconciler(redis_conn, caplog):
    events = AuditEvent.objects.count()
    response = Client().get("/healthz")  # anonymous: no sign-in page
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "checks": {
            "database": True,
            "redis": True,
            "workers": False,
            "scheduler": False,
            "reconciler": False,
        },
    }
    assert response["Cache-Control"].startswith("max-age=0")
    assert AuditEvent.objects.count() == events  # a probe is not an audit event
    # One WARNING naming the parts, not Django's ERROR "Service Unavailable" per probe.
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "health check failing: workers, scheduler, reconciler")
    ]


@pytest.mark.django_db(transaction=True)
def test_real_worker_scheduler_and_cron_make_it_200_and_each_one_missing_is_named(
    redis_conn, settings, monkeypatch
):
    processes = []
    try:
        # A worker without the scheduler, and cron running the reconciler every second.
        processes.append(start_worker())
        processes.append(start_cron(every_seconds=1))
        settings.RECONCILE_INTERVAL_SECONDS = 1
        probe_until(503, {"scheduler"})

        scheduler = start_worker(scheduler=True)
        processes.append(scheduler)
        probe_until(200, set())

        # Cron stops: three intervals and the slack later, the reconciler is late.
        monkeypatch.setattr(health, "RECONCILER_SLACK", 2)
        stop(processes[1])
        probe_until(503, {"reconciler"})

        # The worker with the scheduler stops: the other still works, the scheduler is gone.
        stop(scheduler)
        probe_until(503, {"reconciler", "scheduler"})

        stop(processes[0])
        probe_until(503, {"reconciler", "scheduler", "workers"})
    finally:
        for process in processes:
            stop(process)


@pytest.mark.django_db
def test_redis_refusing_connections_is_503_at_once(settings, monkeypatch):
    # Port 23001 of this task's range: nothing listens there.
    monkeypatch.setitem(settings.RQ_QUEUES["default"], "URL", "redis://127.0.0.1:23001/0")
    began = time.monotonic()
    status, failing = probe()
    assert (status, failing) == (503, {"redis", "workers", "scheduler", "reconciler"})
    assert time.monotonic() - began < 3


@pytest.mark.django_db
def test_a_stalled_redis_answers_503_within_two_seconds_or_so(settings, monkeypatch):
    # A server that accepts connections (the kernel completes the handshake) and never
    # answers: what a hung Redis looks like to a client.
    with socket.create_server(("127.0.0.1", 23002), backlog=16) as silent:
        monkeypatch.setitem(
            settings.RQ_QUEUES["default"], "URL", f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        )
        began = time.monotonic()
        status, failing = probe()
        took = time.monotonic() - began
    assert (status, failing) == (503, {"redis", "workers", "scheduler", "reconciler"})
    assert took < 3


@pytest.mark.django_db
def test_plain_http_is_answered_even_when_https_is_enforced(settings, redis_conn):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # made after the setting: SecurityMiddleware reads it when built
    assert client.get("/accounts/login/").status_code == 301
    assert client.get("/healthz").status_code == 503  # answered, not redirected


@pytest.mark.django_db
def test_only_get_and_head(redis_conn):
    assert Client().head("/healthz").status_code == 503
    assert Client().post("/healthz").status_code == 405
