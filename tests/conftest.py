"""Shared fixtures: a real Redis, users per role, and a burst worker that runs real jobs.

Without REDIS_URL in the environment the tests start their own embedded redis-server on a
socket in a temporary folder; with it (CI), they use that server and flush its database
before every test, so point REDIS_URL at a database number nothing else uses.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import redis

from portal import embedded_redis

_embedded = {}


def pytest_configure(config):
    from django.conf import settings

    # Zero-latency simulator unless a test asks for latency.
    settings.SIMULATOR_STEP_SECONDS = 0
    # One desktop per job in this process, so that tests can run jobs one at a time
    # (run_jobs(max_jobs=1)); worker processes carry on with the next desktops as in
    # production (composer/jobs.py, CARRY_ON_SECONDS).
    settings.DESKTOP_CARRY_ON_SECONDS = 0
    # Passwords hashed in a millisecond, not a quarter second (tests/quick_hasher.py).
    settings.PASSWORD_HASHERS = [
        "tests.quick_hasher.QuickPBKDF2PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]
    folder = Path(tempfile.mkdtemp(prefix="portal-test-"))
    _embedded["folder"] = folder
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        # A file, not memory, so real worker processes (tests/composer/test_workers.py) can
        # open the test database too.
        database.setdefault("TEST", {})["NAME"] = str(folder / "test.sqlite3")
    if "REDIS_URL" in os.environ:
        return
    socket_path = folder / "redis.sock"
    _embedded["process"] = embedded_redis.start(socket_path, folder, persist=False)
    url = f"unix://{socket_path}"
    settings.REDIS_URL = url
    settings.SIMULATOR_REDIS_URL = url
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url
    settings.CACHES["throttle"]["LOCATION"] = url  # the API's rate limits


def pytest_unconfigure(config):
    if "process" in _embedded:
        embedded_redis.stop(_embedded["process"])
    if "folder" in _embedded:
        shutil.rmtree(_embedded["folder"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Live parts share computations through Django's cache (portal/live.py): none may leak
    from one test into the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def redis_conn():
    """The test Redis, emptied before the test."""
    from django.conf import settings

    conn = redis.Redis.from_url(settings.REDIS_URL)
    conn.flushdb()
    yield conn
    conn.close()


GIB = 1024


@pytest.fixture
def run_jobs():
    """Run every queued job (and the jobs they enqueue) with a burst SimpleWorker.

    SimpleWorker runs jobs in this process, so they see the test database; forking workers
    would break its connection.
    """
    from rq import SimpleWorker

    from composer.queue import URGENT, queue

    def run(max_jobs: int | None = None) -> int:
        q = queue()
        # The urgent queue first, as every PortalWorker serves it (composer/worker.py).
        worker = SimpleWorker([queue(URGENT), q], connection=q.connection)
        worker.work(burst=True, max_jobs=max_jobs)
        return q.count + queue(URGENT).count

    return run


@pytest.fixture
def users(db):
    """One user per role, with the groups created by migrate."""
    from django.contrib.auth.models import Group, User

    from portal.roles import ADMINISTRATORS, AUDITORS, HELPDESK

    made = {}
    for username, group in (("ada", ADMINISTRATORS), ("hal", HELPDESK), ("aud", AUDITORS)):
        user = User.objects.create_user(username, password="pw-" + username)
        user.groups.add(Group.objects.get(name=group))
        made[group] = user
    return {"admin": made[ADMINISTRATORS], "helpdesk": made[HELPDESK], "auditor": made[AUDITORS]}


@pytest.fixture
def lab(db, redis_conn):
    """A simulated hypervisor with three datastores and a parent VM with two snapshots,
    mirrored into the inventory tables the way the demo does it."""
    from types import SimpleNamespace

    from composer import endpoint_drivers
    from composer.inventory import sync_datastores
    from pools.models import BaseImage, HypervisorEndpoint, ImageVersion

    endpoint = HypervisorEndpoint.objects.create(name="sim-test")
    sim = endpoint_drivers.for_endpoint(endpoint)
    sim.reset()
    sim.add_datastore("ds-a", 200 * GIB)
    sim.add_datastore("ds-b", 400 * GIB)
    sim.add_datastore("ds-tiny", 25 * GIB)
    sim.add_parent_vm("gold", ["v1", "v2"], disk_mb=40 * GIB, used_mb=20 * GIB)
    datastores = {ds.name: ds for ds in sync_datastores(endpoint)}
    image = BaseImage.objects.create(endpoint=endpoint, name="Win11", parent_vm="gold")
    v1 = ImageVersion.objects.create(image=image, snapshot="v1", disk_mb=40 * GIB, used_mb=20 * GIB)
    v2 = ImageVersion.objects.create(image=image, snapshot="v2", disk_mb=40 * GIB, used_mb=21 * GIB)
    return SimpleNamespace(endpoint=endpoint, sim=sim, ds=datastores, v1=v1, v2=v2)
