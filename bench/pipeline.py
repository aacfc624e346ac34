"""Pipeline efficiency: does an operation on N desktops under limit C take about N/C times
one desktop's time, or a multiple of batch barriers?

Runs the real thing: an embedded Redis, a fresh SQLite database, C real `rqworker`
processes and the simulator with a fixed step time. The baseline is measured in the same
run: one desktop refreshed alone through the same workers. The ratio

    efficiency = (N / C) x baseline / measured

is 1.0 for a perfect pipeline; a batch-at-a-time design would lose a step time at every
barrier. Usage: .venv/bin/python bench/pipeline.py [N] [C] [STEP_SECONDS]
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(n: int = 48, c: int = 4, step: float = 0.2) -> None:
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    os.environ.update(
        PORTAL_DATA_DIR=str(folder),
        DATABASE_URL=f"sqlite:///{folder / 'bench.sqlite3'}",
        REDIS_URL=f"unix://{folder / 'redis.sock'}",
        SIMULATOR_STEP_SECONDS="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="portal.settings",
    )
    from portal import embedded_redis

    redis = embedded_redis.start(folder / "redis.sock", folder, persist=False)
    workers = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        pool, admin = setup(n, c)
        env = {**os.environ, "SIMULATOR_STEP_SECONDS": str(step)}
        workers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "--verbosity", "0", "default"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
            for _ in range(c)
        ]
        time.sleep(2)  # workers up
        single = timed_refresh(admin, pool, list(pool.desktops.order_by("name")[:1]))
        single = min(single, timed_refresh(admin, pool, list(pool.desktops.order_by("name")[1:2])))
        measured = timed_refresh(admin, pool, None)
        ideal = n / c * single
        print(f"N={n} desktops, C={c} workers and limit, step={step}s")
        print(f"one desktop alone (baseline): {single:.2f} s")
        print(f"whole pool: {measured:.2f} s; ideal pipeline N/C x baseline = {ideal:.2f} s")
        print(f"efficiency = ideal / measured = {ideal / measured:.2f}")
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        embedded_redis.stop(redis)
        shutil.rmtree(folder, ignore_errors=True)


def setup(n: int, c: int):
    from django.contrib.auth.models import Group, User
    from rq import SimpleWorker

    from composer import endpoint_drivers, services
    from composer.inventory import sync_datastores
    from composer.queue import queue
    from pools.models import BaseImage, HypervisorEndpoint, ImageVersion

    endpoint = HypervisorEndpoint.objects.create(name="bench", max_maintenance=c)
    sim = endpoint_drivers.for_endpoint(endpoint)
    sim.reset()
    sim.add_datastore("ds-1", 4096 * 1024)
    sim.add_parent_vm("gold", ["v1"])
    (ds,) = sync_datastores(endpoint)
    image = BaseImage.objects.create(endpoint=endpoint, name="Win", parent_vm="gold")
    version = ImageVersion.objects.create(image=image, snapshot="v1", disk_mb=40960, used_mb=20480)
    admin = User.objects.create_user("bench")
    admin.groups.add(Group.objects.get(name="Administrators"))
    services.create_pool(
        admin,
        services.PoolSpec(
            name="Bench",
            naming_pattern="B-{n:fixed=3}",
            size=n,
            datastores=[ds],
            image_version=version,
            overcommit=0,
        ),
    )
    q = queue()
    SimpleWorker([q], connection=q.connection).work(burst=True)  # provision with no delay
    # The worker left its signal handlers behind; Ctrl-C should stop this script again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from pools.models import Pool

    return Pool.objects.get(name="Bench"), admin


def timed_refresh(admin, pool, desktops) -> float:
    from composer import services

    start = time.monotonic()
    operation = services.start_operation(admin, pool, "refresh", desktops)
    while True:
        operation.refresh_from_db()
        if not operation.is_active:
            break
        time.sleep(0.02)
    assert operation.status == "succeeded", operation.status
    return time.monotonic() - start


if __name__ == "__main__":
    main(*[float(a) if "." in a else int(a) for a in sys.argv[1:]])
