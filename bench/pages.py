"""Page speed with 50,000 desktops: do the pages stay fast at scale, on PostgreSQL?

Builds a fresh database (migrated, so it has the real indexes; PostgreSQL by default, a
throwaway database on 127.0.0.1 dropped at the end) holding 50,000 desktops in five pools over
four datastores and four image versions, with sessions, errors, stuck and missing desktops, a
running refresh of 2,000 desktops, a scheduled one, finished and failed operations and 200,000
audit events, then VACUUM ANALYZE (the steady state autovacuum keeps a production database in).
It times each page server-side with Django's test Client (the whole request: middleware,
views, queries, templates; no network) under DEBUG=false as in production, the median of
several requests after a warm-up, and counts the queries each page makes and the bytes it sends.

The baseline, in the same run, is the login page: a trivial page through the same stack.
Django admin's desktop changelist, on the same data, is what a user would otherwise use.
Compare the ratios across machines.

Usage: .venv/bin/python bench/pages.py [DESKTOPS] [RUNS] [AUDIT_EVENTS]
BENCH_DATABASE=sqlite runs it on SQLite instead; BENCH_DATABASE_URL=postgres://... on another
empty database; BENCH_PROFILE=1 prints each page's slowest functions.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024
TIB = 1024 * GIB


PG_SERVER = "postgres://postgres@127.0.0.1:5432"


@contextmanager
def bench_site(name: str, **environment: str):
    """A portal on a fresh, migrated database (PostgreSQL by default: a throwaway database
    dropped at the end, unless BENCH_KEEP; BENCH_DATABASE=sqlite, or BENCH_DATABASE_URL) and
    an embedded Redis, configured as in production (DEBUG=false), with Django set up. What
    every benchmark that times requests at scale starts from; `environment` adds settings."""
    folder = Path(tempfile.mkdtemp(prefix=f"portal-bench-{name}-"))
    throwaway = None
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url and os.environ.get("BENCH_DATABASE", "postgresql") == "sqlite":
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    elif not url:
        throwaway = f"portal_bench_{name}_{os.getpid()}"
        _admin_sql(f"CREATE DATABASE {throwaway}")
        url = f"{PG_SERVER}/{throwaway}"
    os.environ.update(
        PORTAL_DATA_DIR=str(folder),
        DATABASE_URL=url,
        REDIS_URL=f"unix://{folder / 'redis.sock'}",
        SIMULATOR_STEP_SECONDS="0",
        LOG_LEVEL="WARNING",
        DEBUG=os.environ.get("BENCH_DEBUG", "false"),
        SECRET_KEY="bench-" + "x" * 50,
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
        DJANGO_SETTINGS_MODULE="portal.settings",
        **environment,
    )
    from portal import embedded_redis

    redis = embedded_redis.start(folder / "redis.sock", folder, persist=False)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        yield
        connection.close()
    finally:
        embedded_redis.stop(redis)
        shutil.rmtree(folder, ignore_errors=True)
        if throwaway and not os.environ.get("BENCH_KEEP"):
            _admin_sql(f"DROP DATABASE IF EXISTS {throwaway} WITH (FORCE)")
        elif throwaway:
            print(f"kept database {throwaway}")


def analyze() -> None:
    """The statistics autovacuum keeps a production database's planner working from."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def main(total: int = 50_000, runs: int = 9, audit_events: int = 200_000) -> None:
    with bench_site("pages"):
        from django.db import connection

        started = time.monotonic()
        world = populate(total)
        add_audit_events(world["admin"], audit_events)
        analyze()
        print(
            f"{total} desktops, {audit_events} audit events on {connection.vendor}, "
            f"created in {time.monotonic() - started:.1f} s"
        )
        measure(world, runs)


def _admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def add_audit_events(actor, count: int) -> None:
    """Fill the audit log to `count` events, chained and hashed as record() would, but
    written in batches (record() appends one row at a time under the chain's lock)."""
    from django.db import connection
    from django.db.models import QuerySet
    from django.utils import timezone

    from audit.models import HASH_VERSION, AuditEvent, compute_hash

    head = AuditEvent.objects.order_by("-id").first()
    prev, next_id = (head.hash, head.id + 1) if head else ("0" * 64, 1)
    missing = count - AuditEvent.objects.count()
    start = timezone.now() - timedelta(days=365)
    actions = ["refresh", "recompose", "power", "logoff", "view_pool", "rebalance"]
    batch = []
    for i in range(max(missing, 0)):
        event = AuditEvent(
            id=next_id + i,
            at=start + timedelta(seconds=150 * i),
            actor=actor,
            actor_name=actor.username,
            role="Administrators",
            action=actions[i % len(actions)],
            target_type="pool",
            target_id=str(1 + i % 5),
            target_name=["BIG", "ENG", "FIN", "HR", "OPS"][i % 5],
            outcome=["requested", "succeeded", "denied"][i % 3],
            message="",
            parameters={"desktops": i % 40},
            hash_version=HASH_VERSION,
            prev_hash=prev,
        )
        event.hash = prev = compute_hash(event)
        batch.append(event)
        if len(batch) == 5000:
            QuerySet(AuditEvent).bulk_create(batch)
            batch = []
    QuerySet(AuditEvent).bulk_create(batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('portal_auditevent', 'id'), "
                "(SELECT max(id) FROM portal_auditevent))"
            )


def populate(total: int) -> dict:
    """The inventory, written with bulk_create (no hypervisor): what the pages read."""
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from audit.log import record
    from composer.models import DesktopTask, Operation
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
                DesktopTask(
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
                DesktopTask(
                    operation=running,
                    desktop=d,
                    desktop_name=d.name,
                    status="running",
                    step="revert",
                    started_at=now,
                )
            )
        else:
            tasks.append(DesktopTask(operation=running, desktop=d, desktop_name=d.name))
    DesktopTask.objects.bulk_create(tasks, batch_size=2000)
    scheduled = Operation.objects.create(
        kind="refresh",
        pool=pools[1],
        pool_name="ENG",
        status="scheduled",
        requested_by=admin,
        scheduled_for=now + timedelta(hours=8),
    )
    DesktopTask.objects.bulk_create(
        DesktopTask(operation=scheduled, desktop=d, desktop_name=d.name)
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
    DesktopTask.objects.bulk_create(
        (
            DesktopTask(
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
    # Everything last changed an hour ago but the 12 desktops in flight, changed just now:
    # what a poll during the refresh finds (where rows carry when they changed).
    changed = timezone.now()
    if hasattr(DesktopTask, "updated_at"):
        hour_ago = changed - timedelta(hours=1)
        Desktop.objects.update(updated_at=hour_ago)
        Operation.objects.update(updated_at=hour_ago)
        DesktopTask.objects.update(updated_at=hour_ago)
        in_flight = DesktopTask.objects.filter(operation=running, status="running")
        in_flight.update(updated_at=changed)
        Desktop.objects.filter(tasks__in=in_flight).update(updated_at=changed)
    return {
        "admin": admin,
        "helpdesk": helpdesk,
        "big": pools[0],
        "desktop": targets[1500],
        "changed_at": changed.timestamp(),
        # The page of the big pool, by name, that holds the desktops in flight.
        "in_flight_page": 1000 // 100 + 1,
    }


def measure(world: dict, runs: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    admin, helpdesk, superuser = Client(), Client(), Client()
    admin.force_login(world["admin"])
    helpdesk.force_login(world["helpdesk"])
    superuser.force_login(User.objects.create_superuser("root"))
    anonymous = Client()
    big = world["big"].pk
    last_page = (world["big"].desktops.count() + 99) // 100
    hx = {"HX-Request": "true"}
    pages = [
        ("login page (baseline)", anonymous, "/accounts/login/", {}),
        ("dashboard", admin, "/", {}),
        ("dashboard live fragment (htmx)", admin, "/", hx),
        *_live_parts(admin, world),
        ("pool, first page", admin, f"/pools/{big}/", {}),
        (
            "pool, first page, first view after a change (nothing shared)",
            admin,
            f"/pools/{big}/",
            {},
            _forget_shared,
        ),
        ("pool, live fragment (htmx, the page's own address)", admin, f"/pools/{big}/", hx),
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
        ("audit log", admin, "/audit/", {}),
        ("audit log, page 500", admin, "/audit/?page=500", {}),
        ("audit log, action + outcome filter", admin, "/audit/?action=refresh&outcome=denied", {}),
        ("Django admin: desktop changelist", superuser, "/admin/pools/desktop/", {}),
        (
            "Django admin: desktop search 'user123'",
            superuser,
            "/admin/pools/desktop/?q=user123",
            {},
        ),
        (
            "Django admin: desktops of a pool, page 100",
            superuser,
            f"/admin/pools/desktop/?pool__id__exact={big}&p=100",
            {},
        ),
    ]
    rows = []
    only = [o for o in os.environ.get("BENCH_ONLY", "").split(",") if o]
    for label, client, url, headers, *before in pages:
        before = before[0] if before else (lambda: None)
        url = url() if callable(url) else url
        before()
        response = client.get(url, headers=headers)  # warm-up
        assert response.status_code in (200, 204), (label, response.status_code)
        if only and not any(o in label for o in only) and "baseline" not in label:
            continue
        queries = []
        before()
        with connection.execute_wrapper(_counting(queries)):
            response = client.get(url, headers=headers)
        size = len(response.content)
        if os.environ.get("BENCH_DUMP"):  # each answer, to look at what is sent
            name = "".join(c if c.isalnum() else "-" for c in label)[:80]
            Path(os.environ["BENCH_DUMP"], f"{name}.html").write_bytes(response.content)
        times = []
        for _ in range(runs):
            before()
            start = time.perf_counter()
            client.get(url, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
        rows.append((label, statistics.median(times), len(queries), size, response.status_code))
        if os.environ.get("BENCH_PROFILE"):
            _profile(label, client, url, headers, queries)
    baseline = rows[0][1]
    print(f"median of {runs} requests each, after one warm-up; server-side (Django test Client)")
    print("| page | median | x login page | queries | bytes |\n|---|---|---|---|---|")
    for label, ms, count, size, status in rows:
        shown = f"{size:,}" if status == 200 else f"{status}, {size}"
        print(f"| {label} | {ms:.1f} ms | {ms / baseline:.1f} | {count} | {shown} |")


def _live_parts(client, world) -> list:
    """The live parts as a browser polls them: each at the address (and version) its page
    carries, read from the page just before the row is measured (a version changes with the
    time bucket). Empty for a version of the portal without them."""
    import html
    import re

    big = world["big"].pk
    pool_page = f"/pools/{big}/?page={world['in_flight_page']}"
    if "/live/" not in client.get(pool_page).content.decode():
        return []

    def live_url(page: str, pattern: str, changed: bool = False, since: float | None = None):
        def url() -> str:
            found = re.search(pattern, client.get(page).content.decode())
            address = html.unescape(found[1])
            if since is not None:  # as the next poll after one just before the change
                address = re.sub(r"since=[0-9.]+", f"since={since:.3f}", address)
            return re.sub(r"v=[0-9a-f]+", "v=older", address) if changed else address

        return url

    pool = r'id="live"[^>]* hx-get="([^"]+/live/[^"]*)"'
    rows = [
        (
            "pool live part: 12 desktops in flight on the page changed",
            client,
            live_url(pool_page, pool, changed=True, since=world["changed_at"] - 1),
            HX,
        ),
        ("pool live part: nothing changed (204)", client, live_url(pool_page, pool), HX),
    ]
    for part in ("activity", "overview"):
        found = rf'hx-get="([^"]*part={part}[^"]*)"'
        rows += [
            (
                f"dashboard {part} part: changed, computed once for every watcher",
                client,
                live_url("/", found, changed=True),
                HX,
            ),
            (
                f"dashboard {part} part: changed, first watcher (nothing shared yet)",
                client,
                live_url("/", found, changed=True),
                HX,
                _forget_shared,
            ),
            (f"dashboard {part} part: nothing changed (204)", client, live_url("/", found), HX),
        ]
    return rows


HX = {"HX-Request": "true"}


def _forget_shared() -> None:
    from django.core.cache import cache

    cache.clear()


def _counting(queries: list):
    """A database execute wrapper that notes each query and its time (DEBUG is off)."""

    def wrapper(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append(((time.perf_counter() - start) * 1000, sql))

    return wrapper


def _profile(label, client, url, headers, queries) -> None:
    """The slowest queries and functions of one request (BENCH_PROFILE=1)."""
    import cProfile
    import pstats

    print(f"\n## {label}")
    for ms, sql in sorted(queries, reverse=True)[:6]:
        print(f"  {ms:6.1f} ms  {sql[:400]}")
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(url, headers=headers)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
