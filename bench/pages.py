"""Page speed with 50,000 desktops: do the inventory pages stay fast at scale?

Builds a fresh SQLite database (migrated, so it has the real indexes) holding 50,000 desktops
in five pools over four datastores and four image versions, with sessions, errors, stuck and
missing desktops, a running refresh of 2,000 desktops, a scheduled one, finished and failed
operations and audit events. Then it times each page server-side with Django's test Client
(the whole request: middleware, views, queries, templates; no network), the median of
several requests after a warm-up, and counts the queries each page makes.

The baseline, in the same run, is the login page: a trivial page through the same stack.
Compare the ratios across machines. Usage: .venv/bin/python bench/pages.py [DESKTOPS] [RUNS]
(BENCH_DATABASE_URL=postgres://... to run it on an empty PostgreSQL database instead.)
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024
TIB = 1024 * GIB


def main(total: int = 50_000, runs: int = 9) -> None:
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-pages-"))
    os.environ.update(
        PORTAL_DATA_DIR=str(folder),
        # BENCH_DATABASE_URL runs it on another database (it must be empty, e.g. PostgreSQL).
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL")
        or f"sqlite:///{folder / 'bench.sqlite3'}",
        REDIS_URL=f"unix://{folder / 'redis.sock'}",
        SIMULATOR_STEP_SECONDS="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="portal.settings",
    )
    from portal import embedded_redis

    redis = embedded_redis.start(folder / "redis.sock", folder, persist=False)
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
        call_command("migrate", verbosity=0)
        started = time.monotonic()
        world = populate(total)
        print(f"{total} desktops created in {time.monotonic() - started:.1f} s")
        measure(world, runs)
    finally:
        embedded_redis.stop(redis)
        shutil.rmtree(folder, ignore_errors=True)


def populate(total: int) -> dict:
    """The inventory, written with bulk_create (no hypervisor): what the pages read."""
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from composer.models import Operation, OperationDesktop
    from pools.models import (
        BaseImage,
        Datastore,
        Desktop,
        HypervisorEndpoint,
        ImageVersion,
        Pool,
        PoolDatastore,
        Replica,
    )
    from pools.states import DesktopState as S
    from portal.audit import record

    now = timezone.now()
    admin = User.objects.create_user("admin")
    admin.groups.add(Group.objects.get(name="Administrators"))
    helpdesk = User.objects.create_user("helpdesk")
    helpdesk.groups.add(Group.objects.get(name="Helpdesk"))

    endpoint = HypervisorEndpoint.objects.create(name="vcenter-bench")
    datastores = [
        Datastore.objects.create(
            endpoint=endpoint, name=f"ds-{i}", capacity_mb=128 * TIB, free_mb=free * TIB
        )
        for i, free in enumerate([60, 40, 24, 4], start=1)  # ds-4 is past the 95% warning
    ]
    win11 = BaseImage.objects.create(endpoint=endpoint, name="Windows 11", parent_vm="w11-gold")
    win10 = BaseImage.objects.create(endpoint=endpoint, name="Windows 10", parent_vm="w10-gold")
    v1, v2, v3 = (
        ImageVersion.objects.create(
            image=win11,
            snapshot=f"2026-{m:02d}",
            disk_mb=40 * GIB,
            used_mb=20 * GIB,
            created_at=now - timedelta(days=90 - 30 * m),
        )
        for m in (1, 2, 3)
    )
    w10 = ImageVersion.objects.create(
        image=win10, snapshot="22H2", disk_mb=32 * GIB, used_mb=16 * GIB
    )
    replicas = {}
    for version in (v1, v2, w10):
        for ds in datastores:
            replicas[(version.pk, ds.pk)] = Replica.objects.create(
                image_version=version,
                datastore=ds,
                name=f"replica-{version.pk}-{ds.name}",
                status=Replica.Status.READY,
                size_mb=version.used_mb,
            )
    Replica.objects.create(  # nothing uses v3 yet: unused, safe to delete
        image_version=v3, datastore=datastores[0], name="replica-v3-ds-1", status="ready"
    )

    big = total * 9 // 10
    small = (total - big) // 4
    sizes = [("BIG", big, v2), ("ENG", small, v1), ("FIN", small, v2), ("HR", small, w10)]
    sizes.append(("OPS", total - big - 3 * small, v1))
    pools, desktops = [], []
    for name, size, version in sizes:
        pool = Pool.objects.create(
            name=name,
            endpoint=endpoint,
            naming_pattern=f"{name}-{{n:fixed=5}}",
            size=size,
            image_version=version,
            assignment=Pool.Assignment.DEDICATED,
            persistent_disk_mb=5 * GIB,
        )
        PoolDatastore.objects.bulk_create(
            PoolDatastore(pool=pool, datastore=ds, overcommit=7, selected=i < 3)
            for i, ds in enumerate(datastores)
        )
        pools.append(pool)
        for i in range(size):
            ds = datastores[i % 4]
            this_version = v1 if (version == v2 and i % 10 == 0) else version
            state, reason, session, changed, missing = S.AVAILABLE, "", "", now, False
            if i % 100 == 0:
                state, reason = S.ERROR, "customize: the guest did not answer"
            elif i % 100 == 1:
                state, changed = S.MAINTENANCE, now - timedelta(hours=2)  # stuck
            elif i % 3 == 0:
                state, session = S.CONNECTED, f"user{i:05d}"
            elif i % 97 == 0:
                state = S.PROVISIONED
            if i % 500 == 7:
                missing = True
            desktops.append(
                Desktop(
                    pool=pool,
                    name=f"{name}-{i:05d}",
                    state=state,
                    reason=reason,
                    missing=missing,
                    assigned_user=f"user{i:05d}",
                    session_user=session,
                    datastore=ds,
                    replica=replicas[(this_version.pk, ds.pk)],
                    image_version=this_version,
                    checkpoint="custom",
                    delta_mb=300 + i % 700,
                    driver_ref=f"vm-{name}-{i}",
                    state_changed_at=changed - timedelta(minutes=i % 600),
                )
            )
    Desktop.objects.bulk_create(desktops, batch_size=2000)

    # A refresh of 2,000 BIG desktops under way: half done, 12 in flight.
    running = Operation.objects.create(
        kind="refresh",
        pool=pools[0],
        pool_name="BIG",
        status="running",
        requested_by=admin,
        started_at=now - timedelta(minutes=40),
        prepared_at=now - timedelta(minutes=40),
    )
    targets = list(Desktop.objects.filter(pool=pools[0]).order_by("name")[:2000])
    tasks = []
    for i, d in enumerate(targets):
        if i < 1000:
            start = now - timedelta(minutes=40) + timedelta(seconds=2 * i)
            tasks.append(
                OperationDesktop(
                    operation=running,
                    desktop=d,
                    desktop_name=d.name,
                    status="succeeded",
                    step="power",
                    started_at=start,
                    finished_at=start + timedelta(seconds=30 + i % 20),
                )
            )
        elif i < 1012:
            tasks.append(
                OperationDesktop(
                    operation=running,
                    desktop=d,
                    desktop_name=d.name,
                    status="running",
                    step="revert",
                    started_at=now,
                )
            )
        else:
            tasks.append(OperationDesktop(operation=running, desktop=d, desktop_name=d.name))
    OperationDesktop.objects.bulk_create(tasks, batch_size=2000)
    scheduled = Operation.objects.create(
        kind="refresh",
        pool=pools[1],
        pool_name="ENG",
        status="scheduled",
        requested_by=admin,
        scheduled_for=now + timedelta(hours=8),
    )
    OperationDesktop.objects.bulk_create(
        OperationDesktop(operation=scheduled, desktop=d, desktop_name=d.name)
        for d in Desktop.objects.filter(pool=pools[1])[:200]
    )
    # History: 300 finished operations of 20 desktops each, a few failed today.
    history = Operation.objects.bulk_create(
        Operation(
            kind=["refresh", "power", "logoff", "recompose"][i % 4],
            pool=pools[i % 5],
            pool_name=pools[i % 5].name,
            status="partially_failed" if i % 37 == 0 else "succeeded",
            requested_by=admin if i % 3 else helpdesk,
            requested_at=now - timedelta(hours=i),
            started_at=now - timedelta(hours=i),
            finished_at=now - timedelta(hours=i) + timedelta(minutes=5),
        )
        for i in range(300)
    )
    sample = list(Desktop.objects.order_by("pk")[:20])
    OperationDesktop.objects.bulk_create(
        (
            OperationDesktop(
                operation=op,
                desktop=d,
                desktop_name=d.name,
                status="failed" if op.status == "partially_failed" and j == 0 else "succeeded",
            )
            for op in history
            for j, d in enumerate(sample)
        ),
        batch_size=2000,
    )
    for op in history:  # the audit log is hash-chained: one record at a time
        record(actor=admin, action=op.kind, outcome="requested", target=op.pool, operation=op)
    return {"admin": admin, "helpdesk": helpdesk, "big": pools[0], "desktop": targets[1500]}


def measure(world: dict, runs: int) -> None:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    admin, helpdesk = Client(), Client()
    admin.force_login(world["admin"])
    helpdesk.force_login(world["helpdesk"])
    anonymous = Client()
    big = world["big"].pk
    last_page = (world["big"].desktops.count() + 99) // 100
    pages = [
        ("login page (baseline)", anonymous, "/accounts/login/", {}),
        ("dashboard", admin, "/", {}),
        ("dashboard live fragment (htmx)", admin, "/", {"HX-Request": "true"}),
        ("pool, first page", admin, f"/pools/{big}/", {}),
        ("pool, live fragment (htmx)", admin, f"/pools/{big}/", {"HX-Request": "true"}),
        (
            "pool, state + datastore + version, by state-changed desc, page 20",
            admin,
            f"/pools/{big}/?state=available&datastore=2&version=2&sort=-changed&page=20",
            {},
        ),
        (
            "pool, sorted by datastore, last page",
            admin,
            f"/pools/{big}/?sort=datastore&page={last_page}",
            {},
        ),
        ("pool, sorted by user desc, page 100", admin, f"/pools/{big}/?sort=-user&page=100", {}),
        ("pool, search 'user123' (partial)", admin, f"/pools/{big}/?q=user123", {}),
        ("pool, user exact", admin, f"/pools/{big}/?user=user01234", {}),
        ("pool, stuck flag", admin, f"/pools/{big}/?flag=stuck", {}),
        ("datastores", admin, "/datastores/", {}),
        ("images", admin, "/images/", {}),
        ("helpdesk search 'user0123' (helpdesk)", helpdesk, "/helpdesk/?q=user0123", {}),
        ("helpdesk search, no match", helpdesk, "/helpdesk/?q=nobody-here", {}),
        ("operations", admin, "/operations/", {}),
        ("operations, kind + pool filter", admin, "/operations/?kind=refresh&pool=BIG", {}),
        ("desktop detail", admin, f"/desktops/{world['desktop'].pk}/", {}),
    ]
    rows = []
    for label, client, url, headers in pages:
        response = client.get(url, headers=headers)  # warm-up
        assert response.status_code == 200, (label, response.status_code)
        reset_queries()  # the log is a bounded deque: a full one would count nothing
        with CaptureQueriesContext(connection) as queries:
            client.get(url, headers=headers)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            client.get(url, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
        rows.append((label, statistics.median(times), len(queries)))
    baseline = rows[0][1]
    print(f"median of {runs} requests each, after one warm-up; server-side (Django test Client)")
    print("| page | median | x baseline | queries |\n|---|---|---|---|")
    for label, ms, count in rows:
        print(f"| {label} | {ms:.1f} ms | {ms / baseline:.1f} | {count} |")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
