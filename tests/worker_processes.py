"""Real `manage.py rqworker` processes against the test database and the test Redis,
started the way production runs them (tests/composer/test_workers.py, tests/vsphere/)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def database_url(port: int | None = None) -> str:
    """The test database's URL; `port` reaches PostgreSQL through another port (a proxy)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    auth = f"{user}:{db['PASSWORD']}@" if db["PASSWORD"] else f"{user}@"
    host = "127.0.0.1" if port else db["HOST"] or "127.0.0.1"
    return f"postgres://{auth}{host}:{port or db['PORT'] or 5432}/{db['NAME']}"


def _environment(
    step_seconds: float, redis_url: str | None, env: dict | None, database: str | None = None
) -> dict:
    return {
        **os.environ,
        "LOG_LEVEL": "WARNING",  # unless the test asks for more
        **(env or {}),
        # The database may be reached through a proxy the test can cut (tests/tcp_proxy.py).
        "DATABASE_URL": database or database_url(),
        # The job queue may live on a Redis of the test's own; the simulator stays put.
        "REDIS_URL": redis_url or settings.REDIS_URL,
        "SIMULATOR_REDIS_URL": settings.SIMULATOR_REDIS_URL,
        "SIMULATOR_STEP_SECONDS": str(step_seconds),
    }


def start_worker(
    step_seconds: float = 0,
    burst: bool = False,
    env: dict | None = None,
    scheduler=False,
    redis_url: str | None = None,
    database: str | None = None,
    output=None,
) -> subprocess.Popen:
    """A worker process; `scheduler` runs rq's scheduler in it too, as `make run` does, for
    the jobs enqueued for later (a desktop parked while it waits). `output`: a file its
    stdout and stderr go to (else this process's)."""
    args = [sys.executable, "manage.py", "rqworker", "default"]
    if scheduler:
        args.insert(-1, "--with-scheduler")
    if burst:
        args.append("--burst")
    # Its own process group, so killing it takes its work horse too, as a host crash would.
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=_environment(step_seconds, redis_url, env, database),
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


def start_cron(
    every_seconds: int, redis_url: str | None = None, database: str | None = None
) -> subprocess.Popen:
    """The cron process (`manage.py runcron`), running the reconciler every_seconds."""
    env = _environment(0, redis_url, {"RECONCILE_INTERVAL_SECONDS": str(every_seconds)}, database)
    return subprocess.Popen(
        [sys.executable, "manage.py", "runcron", "--logging-level", "WARNING"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def stop(worker: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
    worker.wait(timeout=60)


def wait_for(predicate, timeout=120, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def finish(operation, timeout=180):
    """Wait for the operation to end and the workers to be idle (the job that ends an
    operation goes on to clean up unused replicas)."""
    from composer.queue import URGENT, queue

    queues = (queue(), queue(URGENT))

    def done():
        operation.refresh_from_db()
        return not operation.is_active and all(
            q.count == 0 and q.started_job_registry.count == 0 for q in queues
        )

    wait_for(done, timeout=timeout, interval=0.1)
    return operation


def errors(operation) -> str:
    """What went wrong in an operation, for an assertion's message."""
    rows = operation.tasks.exclude(error="").values_list("desktop_name", "step", "error")
    return "; ".join(f"{name} at {step}: {error}" for name, step, error in rows) or (
        operation.error or "no error recorded"
    )
