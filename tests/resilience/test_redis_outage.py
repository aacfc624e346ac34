"""Redis goes away and comes back, with or without its data (issue 9, item 5).

The job queue lives on a Redis of the test's own here (a real redis-server the test stops,
kills and starts again); the simulator's inventory stays on the shared test Redis, as a
hypervisor would stay up while the portal's queue restarts.
"""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from composer import services
from composer.models import DesktopTask, Operation
from composer.reconciler import reconcile
from pools.states import DesktopState
from portal import embedded_redis
from tests.worker_processes import errors, finish, start_cron, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class QueueRedis:
    """A redis-server for the job queue that the test may stop, kill and start again."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.socket = folder / "queue.sock"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self):
        self.process = embedded_redis.start(self.socket, self.folder, persist=True)

    def stop(self):
        """As an administrator restarts it: it saves its data first."""
        embedded_redis.stop(self.process)

    def crash_and_lose_data(self):
        self.process.kill()
        self.process.wait()
        (self.folder / "redis.rdb").unlink(missing_ok=True)


@pytest.fixture
def queue_redis(tmp_path_factory, monkeypatch):
    # A short folder name: a unix socket path is limited to about 100 characters.
    redis = QueueRedis(tmp_path_factory.mktemp("q"))
    # This process's queue (requests, the reconciler, run_jobs) goes there too.
    for name in ("default", "urgent"):
        monkeypatch.setitem(settings.RQ_QUEUES[name], "URL", redis.url)
    yield redis
    if redis.process is not None:
        embedded_redis.stop(redis.process)


def test_work_asked_for_while_redis_is_down_is_saved_said_and_done_when_it_is_back(
    users, make_pool, queue_redis, run_jobs
):
    queue_redis.start()
    pool = make_pool("Outage", "RO-{n}", 2)
    run_jobs()
    desktop = pool.desktops.get(name="RO-1")
    queue_redis.stop()

    client = Client()
    client.force_login(users["admin"])
    response = client.post(
        reverse("pools:operate", args=[pool.pk, "refresh"]),
        {
            "desktop": [desktop.pk],
            "selection": "1",
            "submission": "outage-1",
            "when": "now",
            "logoff_policy": "wait",
            "grace_seconds": 300,
        },
        follow=True,
    )
    assert response.status_code == 200  # not a 500: the operation is saved
    assert "will start on its own when the job queue is back" in response.content.decode()
    operation = pool.operations.get(kind="refresh")
    assert operation.status == Operation.Status.QUEUED
    assert list(operation.tasks.values_list("desktop_id", flat=True)) == [desktop.pk]

    queue_redis.start()  # back, with the data it had: the refresh's job was never there
    Operation.objects.filter(pk=operation.pk).update(
        requested_at=timezone.now() - timedelta(minutes=1)
    )
    assert reconcile()["operations_restarted"] == 1
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED, errors(operation)
    desktop.refresh_from_db()
    assert desktop.state == DesktopState.AVAILABLE


def _refresh_and_wait_until_running(users, pool) -> Operation:
    operation = services.start_operation(users["admin"], pool, "refresh")
    wait_for(
        lambda: operation.tasks.filter(status=DesktopTask.Status.RUNNING).exists(),
        timeout=60,
    )
    return operation


def test_a_worker_and_cron_outlive_redis_restarts_and_the_work_completes(
    users, make_pool, queue_redis, run_jobs
):
    queue_redis.start()
    pool = make_pool("Restart", "RR-{n}", 3)
    run_jobs()
    # Steps of 0.5 s so Redis goes away while desktops are being worked on; the reconciler
    # every 2 s so a desktop whose job Redis lost is handed out again soon.
    worker = start_worker(step_seconds=0.5, scheduler=True, redis_url=queue_redis.url)
    cron = start_cron(every_seconds=2, redis_url=queue_redis.url)
    try:
        # 1. Redis restarted by an administrator: it saves its data and comes back with it.
        operation = _refresh_and_wait_until_running(users, pool)
        queue_redis.stop()
        time.sleep(8)  # jobs end, heartbeats and cron ticks fail meanwhile
        assert worker.poll() is None, "the worker exited while Redis was away"
        assert cron.poll() is None, "cron exited while Redis was away"
        queue_redis.start()
        finish(operation, timeout=180)
        assert operation.status == Operation.Status.SUCCEEDED, errors(operation)

        # 2. Redis crashed and lost every job: the reconciler hands the desktops out again.
        operation = _refresh_and_wait_until_running(users, pool)
        queue_redis.crash_and_lose_data()
        time.sleep(5)
        assert worker.poll() is None and cron.poll() is None
        queue_redis.start()
        finish(operation, timeout=180)
        assert operation.status == Operation.Status.SUCCEEDED, errors(operation)

        assert worker.poll() is None and cron.poll() is None
        assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
    finally:
        stop(worker)
        stop(cron)
