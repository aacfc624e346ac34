"""Load: many people watching the portal while a 200-desktop operation runs.

The issue's acceptance point: gunicorn with 2 workers on loopback; 50 clients polling live
fragments every 2 s and 5 clients browsing pages for 60 s, while a refresh of 200 desktops
runs on 2 RQ workers. Target: 0 errors, p99 latency under 250 ms, and the refresh's wall
time within 10% of the same refresh with nobody watching.

What the script does, all on this machine (loopback only):

1. Creates a throwaway PostgreSQL database (or uses --database-url, which must be empty) and
   takes a Redis database number that must be empty (--redis-url, default .../13). The
   portal runs as in production: DEBUG=false, a generated SECRET_KEY, ALLOWED_HOSTS for
   loopback, and SECURE_SSL_REDIRECT=false so plain http works. Session cookies are then
   marked Secure, which an http client does not send back: each client gets a session
   created server-side (Django's SessionStore, as a login would) and sends its `sessionid`
   cookie itself.
2. Migrates, then builds the inventory: a simulated hypervisor endpoint and a pool of 200
   desktops provisioned for real (services.create_pool, its RQ jobs run by a burst worker
   with the simulator at zero latency), plus --filler desktops written with bulk_create in
   pools of another endpoint (and some finished operations and audit events), so that the
   pages have a realistic weight.
3. Starts 2 RQ worker processes (`manage.py rqworker --with-scheduler default` and
   `manage.py rqworker default`, the portal's worker class) with the simulator at --step
   seconds per hypervisor call, and gunicorn (`gunicorn portal.wsgi -w 2`), idle. A refresh
   of 12 desktops warms every process up (not measured).
4. Run 1, nobody watching: a refresh of the whole pool (services.start_operation as an
   administrator); its wall time is the Operation's requested_at -> finished_at.
5. Run 2, watched: the same refresh starts, and for --seconds --pollers clients watch: each
   opens its page over the first 10 s (ARRIVAL; the pool page, some with a sort, a filter or a page;
   --dashboard-pollers of them the dashboard; these loads are reported apart), and then
   polls what htmx would poll on it: every element with hx-get and hx-trigger "every Ns",
   each on its own timer, sending HX-Request and the other HX-* headers, the hx-headers of
   <body> and of the element, its hx-vals, If-None-Match when an answer had an ETag
   (If-Modified-Since for Last-Modified). The next poll comes N s after an answer was swapped
   in (after the previous poll when nothing was: 204, 304, an error); a swapped-in version
   of the element that no longer polls, or a 286, ends its polling, and an element swapped
   in that polls (out of band, say) starts. --interval sets the portal's POLL_SECONDS.
   Meanwhile --browsers clients load full pages in a loop (dashboard, pool pages with sorts,
   filters and pages, the filler's big pool, operations, the running operation, helpdesk
   searches, datastores, images, the audit log) with 0.2-1 s of think time.
6. Reports requests, errors, p50/p95/p99 latency (fragments, pages, all; per page too), the
   same server-side from gunicorn's access log (without the wait for a free worker), the
   CPU each process group used, and the two wall times; it exits 1 unless errors == 0,
   p99 < 250 ms and the wall-time ratio <= 1.10. Latency is measured by the client, from
   sending the request to its last byte. An error is an exception or a status other than
   2xx, 286 (htmx: stop polling) and 304. The machine is shared: when other work used more
   than 10% of it during a run, the report says so (run again).
7. Cleans up: stops the processes it started, drops the database it created, flushes its
   Redis database.

Usage:
    .venv/bin/python bench/load.py [--seconds 60] [--pollers 50] [--dashboard-pollers 5]
        [--browsers 5] [--desktops 200] [--filler 20000] [--step 0.12] [--interval 2]
        [--database-url postgres://...] [--redis-url redis://127.0.0.1:6379/13] [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024
TIB = 1024 * GIB
P99_TARGET_MS = 250.0
RATIO_TARGET = 1.10
# Answers that mean "nothing changed" to a poller: 204 (htmx swaps nothing), 286 (htmx stops
# polling), 304 (not modified, after If-None-Match or If-Modified-Since).
UNCHANGED = {204, 286, 304}
# The pollers open their pages at random over the first ARRIVAL seconds of the load.
ARRIVAL = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the load (60)")
    parser.add_argument("--pollers", type=int, default=50, help="clients polling (50)")
    parser.add_argument(
        "--dashboard-pollers", type=int, default=5, help="of the pollers, on the dashboard (5)"
    )
    parser.add_argument("--browsers", type=int, default=5, help="clients browsing pages (5)")
    parser.add_argument(
        "--interval", type=int, default=2, help="the portal's POLL_SECONDS: pages poll so (2)"
    )
    parser.add_argument("--desktops", type=int, default=200, help="desktops refreshed (200)")
    parser.add_argument(
        "--filler", type=int, default=20_000, help="extra desktops for the pages' weight (20000)"
    )
    parser.add_argument(
        "--step", type=float, default=0.12, help="simulator seconds per hypervisor call (0.12)"
    )
    parser.add_argument("--rq-workers", type=int, default=2, help="RQ worker processes (2)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (0: a free one)")
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database to use (kept); default: a new one, dropped after",
    )
    parser.add_argument(
        "--admin-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="where to create and drop the throwaway database",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="an empty Redis database for the queues and the simulator; flushed after",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the clients")
    return parser.parse_args(argv)


# -- the portal's processes ----------------------------------------------------------------


class Processes:
    """The processes this script starts, each in a session (process group) of its own, so
    that stopping one stops its children (gunicorn's workers, rq's work horses) and nothing
    else."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self.tail(name)}")

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for _, proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _proc_ticks(pid: int) -> int:
    """CPU ticks of a process and of its children it has reaped (utime, stime, cutime,
    cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])


def _tree_ticks(root: int) -> int:
    """CPU ticks of a process and all its descendants alive now (and those they reaped)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    return sum(_proc_ticks(pid) for pid in tree)


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all cores."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])
    return total - idle, total


SERVERS: dict[str, int] = {}  # "PostgreSQL" and "Redis": their main process, when local
OTHER = "everything else (other work on the machine)"


def find_servers(redis_url: str) -> None:
    """The PostgreSQL postmaster (the parent of our backend: it reaps every backend, so its
    children's time counts there) and the Redis server, for the CPU table. They serve
    whoever else uses them too."""
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    try:
        stat = Path(f"/proc/{backend}/stat").read_text()
        SERVERS["PostgreSQL (the whole server)"] = int(stat.rsplit(")", 1)[1].split()[1])
    except OSError:
        pass  # not on this machine
    pid = redis.Redis.from_url(redis_url).info("server").get("process_id")
    if pid and Path(f"/proc/{pid}").exists():
        SERVERS["Redis (the whole server)"] = int(pid)


class CpuMeter:
    """CPU seconds used meanwhile: by the machine, by this script, by each process group
    this script started (gunicorn and its workers, each RQ worker and its work horses), by
    PostgreSQL and Redis, and by everything else."""

    def __init__(self, processes: Processes):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.groups = [(name, proc.pid) for name, proc in processes.started]
        self.start = self._read()
        self.wall = time.monotonic()

    def _read(self) -> dict[str, float]:
        busy, total = _machine_ticks()
        values = {"machine busy": busy / self.hz, "machine total": total / self.hz}
        values["load.py (the clients)"] = _tree_ticks(os.getpid()) / self.hz
        for name, pid in self.groups:
            values[name] = _tree_ticks(pid) / self.hz
        # The script's own tree includes the groups it started: count them apart.
        values["load.py (the clients)"] -= sum(values[name] for name, _ in self.groups)
        for name, pid in SERVERS.items():
            values[name] = _tree_ticks(pid) / self.hz
        return values

    def read(self) -> dict[str, float]:
        end = self._read()
        used = {name: end[name] - self.start[name] for name in end}
        machine = ("machine busy", "machine total")
        accounted = sum(seconds for name, seconds in used.items() if name not in machine)
        used[OTHER] = used["machine busy"] - accounted
        used["wall"] = time.monotonic() - self.wall
        return used


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_database(admin_url: str) -> str:
    """A new, empty database; its URL. CREATE fails rather than reuse an existing one."""
    import psycopg

    name = f"portal_bench_load_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlparse(admin_url)._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_rq_workers(count: int, processes: Processes, timeout: float = 60) -> None:
    from rq import Worker

    from composer.queue import queue

    connection = queue().connection
    deadline = time.monotonic() + timeout
    while Worker.count(connection=connection) < count:
        processes.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} RQ workers did not start")
        time.sleep(0.2)
    time.sleep(2)  # the scheduler starts too


def wait_web(base: str, processes: Processes, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        processes.check()
        try:
            if httpx.get(f"{base}/accounts/login/", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not answer: {processes.tail('gunicorn')}")
        time.sleep(0.3)


# -- the inventory -----------------------------------------------------------------------------


@dataclass
class World:
    admin: object
    pool: object  # the pool refreshed
    filler_pool: object | None  # the filler's biggest pool
    last_page: int  # of the filler's biggest pool


def build_inventory(desktops: int, filler: int) -> World:
    from django.contrib.auth.models import Group, User
    from rq import SimpleWorker

    from composer import endpoint_drivers, services
    from composer.inventory import sync_datastores
    from composer.queue import URGENT, queue
    from pools.models import BaseImage, HypervisorEndpoint, ImageVersion, Pool

    admin = User.objects.create_user("load-admin")
    admin.groups.add(Group.objects.get(name="Administrators"))
    endpoint = HypervisorEndpoint.objects.create(name="load-sim")  # default limits (12)
    sim = endpoint_drivers.for_endpoint(endpoint)
    sim.reset()
    sim.add_datastore("load-ds-1", 16 * TIB)
    sim.add_datastore("load-ds-2", 16 * TIB)
    sim.add_parent_vm("load-gold", ["v1"])
    datastores = sync_datastores(endpoint)
    image = BaseImage.objects.create(endpoint=endpoint, name="Load image", parent_vm="load-gold")
    version = ImageVersion.objects.create(
        image=image, snapshot="v1", disk_mb=40 * GIB, used_mb=20 * GIB
    )
    started = time.monotonic()
    operation = services.create_pool(
        admin,
        services.PoolSpec(
            name="LOAD",
            naming_pattern="LOAD-{n:fixed=4}",
            size=desktops,
            datastores=datastores,
            image_version=version,
            overcommit=0,
        ),
    )
    q = queue()
    SimpleWorker([queue(URGENT), q], connection=q.connection).work(burst=True)
    # The worker left its signal handlers behind; Ctrl-C should stop this script again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    operation.refresh_from_db()
    if operation.status != "succeeded":
        raise RuntimeError(f"provisioning ended {operation.status}")
    print(f"pool LOAD: {desktops} desktops provisioned in {time.monotonic() - started:.1f} s")
    world = World(admin, Pool.objects.get(name="LOAD"), None, 1)
    if filler:
        started = time.monotonic()
        world.filler_pool = add_filler(filler, admin)
        world.last_page = (filler // 2 + 99) // 100
        print(f"filler: {filler} desktops written in {time.monotonic() - started:.1f} s")
    return world


def add_filler(total: int, admin):
    """Desktops in pools of a second endpoint, written directly (no hypervisor behind them):
    half of them in one big pool, the rest in pools of up to 2,500; 1% in Error, a third with
    a session; 200 finished operations with their audit events. Returns the big pool."""
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
    endpoint = HypervisorEndpoint.objects.create(name="filler-vc")
    datastores = [
        Datastore.objects.create(
            endpoint=endpoint, name=f"filler-ds-{i}", capacity_mb=128 * TIB, free_mb=free * TIB
        )
        for i, free in enumerate([60, 40, 20], start=1)
    ]
    image = BaseImage.objects.create(endpoint=endpoint, name="Filler image", parent_vm="f-gold")
    version = ImageVersion.objects.create(
        image=image, snapshot="f1", disk_mb=40 * GIB, used_mb=20 * GIB
    )
    replicas = [
        Replica.objects.create(
            image_version=version,
            datastore=ds,
            name=f"replica-f1-{ds.name}",
            status=Replica.Status.READY,
            size_mb=version.used_mb,
        )
        for ds in datastores
    ]
    big = total // 2
    sizes = [big]
    rest = total - big
    while rest > 0:
        sizes.append(min(2500, rest))
        rest -= sizes[-1]
    pools, n = [], 0
    for p, size in enumerate(sizes):
        pool = Pool.objects.create(
            name=f"F{p}",
            endpoint=endpoint,
            naming_pattern=f"F{p}-{{n:fixed=6}}",
            size=size,
            image_version=version,
            assignment=Pool.Assignment.DEDICATED,
        )
        PoolDatastore.objects.bulk_create(
            PoolDatastore(pool=pool, datastore=ds, overcommit=7) for ds in datastores
        )
        pools.append(pool)
        rows = []
        for i in range(size):
            n += 1
            state, reason, session = S.AVAILABLE, "", ""
            if i % 100 == 0:
                state, reason = S.ERROR, "customize: the guest did not answer"
            elif i % 3 == 0:
                state, session = S.CONNECTED, f"user{n:05d}"
            rows.append(
                Desktop(
                    pool=pool,
                    name=f"F{p}-{i:06d}",
                    state=state,
                    reason=reason,
                    assigned_user=f"user{n:05d}",
                    session_user=session,
                    datastore=datastores[i % 3],
                    replica=replicas[i % 3],
                    image_version=version,
                    checkpoint="custom",
                    delta_mb=300 + i % 700,
                    driver_ref=f"vm-F{p}-{i}",
                    state_changed_at=now - timedelta(minutes=i % 600),
                )
            )
        Desktop.objects.bulk_create(rows, batch_size=2000)
    history = Operation.objects.bulk_create(
        Operation(
            kind=["refresh", "power", "logoff", "recompose"][i % 4],
            pool=pools[i % len(pools)],
            pool_name=pools[i % len(pools)].name,
            status="partially_failed" if i % 37 == 0 else "succeeded",
            requested_by=admin,
            requested_at=now - timedelta(hours=i + 1),
            started_at=now - timedelta(hours=i + 1),
            finished_at=now - timedelta(hours=i + 1) + timedelta(minutes=5),
        )
        for i in range(200)
    )
    sample = list(Desktop.objects.filter(pool=pools[0]).order_by("pk")[:10])
    DesktopTask.objects.bulk_create(
        DesktopTask(operation=op, desktop=d, desktop_name=d.name, status="succeeded")
        for op in history
        for d in sample
    )
    for op in history:  # the audit log is hash-chained: one record at a time
        record(actor=admin, action=op.kind, outcome="requested", target=op.pool, operation=op)
    return pools[0]


def session_cookie(user) -> str:
    """A signed-in session for `user`, made server-side as django.contrib.auth.login would."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


# -- the operation -----------------------------------------------------------------------------


def start_refresh(admin, pool, desktops=None):
    from composer import services

    return services.start_operation(admin, pool, "refresh", desktops)


def wait_operation(operation, cpu: CpuMeter | None = None, timeout: float = 1800) -> dict:
    """Poll the row until the operation has ended; its wall time from the database, and the
    CPU used meanwhile when given a meter."""
    from django.db import connection

    try:
        deadline = time.monotonic() + timeout
        while True:
            operation.refresh_from_db()
            if not operation.is_active:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{operation} did not end in {timeout} s")
            time.sleep(0.1)
        ended = time.monotonic()
        seconds = (operation.finished_at - operation.requested_at).total_seconds()
        result = {"status": operation.status, "seconds": seconds, "ended": ended}
        if cpu is not None:
            result["cpu"] = cpu.read()
        return result
    finally:
        connection.close()  # this may be a thread of its own (run 2)


def timed_refresh(admin, pool, desktops=None, cpu: CpuMeter | None = None) -> dict:
    started = time.monotonic()
    result = wait_operation(start_refresh(admin, pool, desktops), cpu)
    result["observed"] = result["ended"] - started
    return result


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # "fragment", "page", or "open" (a poller opening its page, before the load)
    label: str
    status: int | None
    ms: float
    start: float  # monotonic
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and (200 <= self.status < 300 or self.status in UNCHANGED)


OPENING_TAG = re.compile(r"<[a-zA-Z][^>]*>")
ATTRIBUTE = re.compile(r"""([\w:.@-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def attributes(tag: str) -> dict[str, str]:
    return {
        m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
        for m in ATTRIBUTE.finditer(tag)
    }


def find_tag(text: str, predicate) -> dict[str, str] | None:
    for match in OPENING_TAG.finditer(text):
        attrs = attributes(match.group(0))
        if predicate(match.group(0), attrs):
            return attrs
    return None


def json_attribute(attrs: dict[str, str] | None, name: str) -> dict:
    try:
        value = json.loads((attrs or {}).get(name, "") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


EVERY = re.compile(r"\bevery\s+(\d+(?:\.\d+)?)(ms|s)?\b")


@dataclass
class Polled:
    """An element htmx polls (hx-get, hx-trigger "every Ns"): what it sends with each poll."""

    id: str
    url: str
    interval: float
    headers: dict = field(default_factory=dict)  # the element's own hx-headers
    vals: dict = field(default_factory=dict)  # hx-vals: query parameters of a GET
    etag: str = ""  # sent back as If-None-Match
    last_modified: str = ""  # sent back as If-Modified-Since


def polled_elements(text: str) -> dict[str, Polled]:
    """Every element of `text` that htmx would poll, by id."""
    found = {}
    for match in OPENING_TAG.finditer(text):
        attrs = attributes(match.group(0))
        every = EVERY.search(attrs.get("hx-trigger", ""))
        if "hx-get" not in attrs or not every:
            continue
        seconds = float(every.group(1)) / (1000 if every.group(2) == "ms" else 1)
        ident = attrs.get("id") or f"(element {len(found) + 1})"
        found[ident] = Polled(
            ident,
            attrs["hx-get"],
            seconds,
            json_attribute(attrs, "hx-headers"),
            json_attribute(attrs, "hx-vals"),
        )
    return found


class Client:
    """One browser: its own connections and its own signed-in session."""

    def __init__(self, base: str, session_key: str, samples: list[Sample]):
        import httpx

        self.base = base
        self.cookie = f"sessionid={session_key}"
        self.samples = samples
        self.http = httpx.AsyncClient(base_url=base, timeout=30.0, follow_redirects=False)

    async def get(self, kind: str, label: str, url: str, headers: dict | None = None):
        start = time.monotonic()
        try:
            response = await self.http.get(url, headers={**(headers or {}), "Cookie": self.cookie})
        except Exception as exc:  # every failure is a sample, and the client carries on
            ms = (time.monotonic() - start) * 1000
            self.samples.append(Sample(kind, label, None, ms, start, type(exc).__name__))
            return None
        ms = (time.monotonic() - start) * 1000
        # The session cookie is sent by hand; nothing else the server sets is needed for GETs.
        self.http.cookies.clear()
        sample = Sample(kind, label, response.status_code, ms, start)
        if not sample.ok:
            sample.error = f"HTTP {response.status_code}"
        self.samples.append(sample)
        return response

    async def close(self):
        await self.http.aclose()


class Watcher:
    """One person with a page open: loads it, then htmx polls each element of it that polls,
    each on its own timer, as long as the element's latest version says so."""

    def __init__(self, client: Client, page: tuple[str, str], stats: Counter):
        self.client = client
        self.label, self.page_url = page
        self.stats = stats  # elements started polling, stopped by the server, pages without
        self.body_headers: dict = {}  # hx-headers of <body>: every request from the page
        self.polling: dict[str, asyncio.Task] = {}

    async def watch(self, deadline: float, rng: random.Random) -> None:
        # People arrive over the first ARRIVAL seconds: 50 pages opened within 2 s queue up
        # behind each other on two gunicorn workers (a thundering herd, not watching).
        await asyncio.sleep(rng.uniform(0, ARRIVAL))
        response = await self.client.get("open", f"{self.label} (page opened)", self.page_url)
        if response is None or response.status_code != 200:
            return
        body = find_tag(response.text, lambda tag, a: tag[:5].lower() == "<body")
        self.body_headers = json_attribute(body, "hx-headers")
        elements = polled_elements(response.text)
        if not elements:
            self.stats["pages opened with nothing to poll"] += 1
        for element in elements.values():
            self.start(element, deadline, rng)
        while self.polling:  # polls may start others (an element swapped in out of band)
            await asyncio.gather(*self.polling.values())
            self.polling = {k: t for k, t in self.polling.items() if not t.done()}

    def start(self, element: Polled, deadline: float, rng: random.Random) -> None:
        self.stats["elements polled"] += 1
        self.polling[element.id] = asyncio.create_task(self.poll(element, deadline, rng))

    def request(self, element: Polled) -> tuple[str, dict]:
        url = element.url
        if element.vals:
            url += ("&" if "?" in url else "?") + urlencode(element.vals)
        headers = {"HX-Request": "true", "HX-Current-URL": self.client.base + self.page_url}
        if not element.id.startswith("("):
            headers.update({"HX-Target": element.id, "HX-Trigger": element.id})
        headers.update({**self.body_headers, **element.headers})
        if element.etag:
            headers["If-None-Match"] = element.etag
        if element.last_modified:
            headers["If-Modified-Since"] = element.last_modified
        return url, headers

    async def poll(self, element: Polled, deadline: float, rng: random.Random) -> None:
        """The next poll `interval` after an answer was swapped in, or after the previous poll
        when nothing was swapped (204, 304, an error). A swapped-in version that no longer
        polls, or a 286, ends it, as in htmx."""
        fired = time.monotonic() - rng.uniform(0, element.interval)  # timers not in step
        swapped = False
        while True:
            wait = element.interval if swapped else fired + element.interval - time.monotonic()
            await asyncio.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return
            fired = time.monotonic()
            url, headers = self.request(element)
            label = f"{self.label} (live #{element.id})"
            response = await self.client.get("fragment", label, url, headers)
            swapped = response is not None and response.status_code == 200
            if response is not None and response.status_code == 286:
                self.stats["elements stopped by the server"] += 1
                return
            if not swapped:
                continue
            element.etag = response.headers.get("etag", element.etag)
            element.last_modified = response.headers.get("last-modified", element.last_modified)
            new = polled_elements(response.text)
            for other in new.values():  # also swapped in (out of band): polls from now on
                if other.id != element.id and other.id not in self.polling:
                    self.start(other, deadline, rng)
            if element.id not in new:
                self.stats["elements stopped by the server"] += 1
                return
            latest = new[element.id]
            element.url, element.interval = latest.url, latest.interval
            element.headers, element.vals = latest.headers, latest.vals


async def browser(client: Client, pages: list[tuple[str, str]], deadline, rng):
    """Loads full pages one after another, with a short think time between them."""
    await asyncio.sleep(rng.uniform(0, 1))
    while time.monotonic() < deadline:
        label, url = rng.choice(pages)
        await client.get("page", label, url)
        await asyncio.sleep(min(rng.uniform(0.2, 1.0), max(0.0, deadline - time.monotonic())))


def poller_pages(world: World, count: int, dashboards: int) -> list[tuple[str, str]]:
    pool = f"/pools/{world.pool.pk}/"
    variants = [
        ("pool", pool),
        ("pool", pool),
        ("pool", pool),
        ("pool", pool),
        ("pool ?sort=-changed", f"{pool}?sort=-changed"),
        ("pool ?state=maintenance", f"{pool}?state=maintenance"),
        ("pool ?page=2", f"{pool}?page=2"),
    ]
    pages = [("dashboard", "/")] * min(dashboards, count)
    pages += [variants[i % len(variants)] for i in range(count - len(pages))]
    return pages


def browsing_pages(world: World, operation) -> list[tuple[str, str]]:
    pool = f"/pools/{world.pool.pk}/"
    pages = [
        ("dashboard", "/"),
        ("pools", "/pools/"),
        ("pool", pool),
        ("pool ?sort=-changed", f"{pool}?sort=-changed"),
        ("pool ?sort=state&page=2", f"{pool}?sort=state&page=2"),
        ("pool ?state=maintenance", f"{pool}?state=maintenance"),
        ("pool ?state=available&sort=-name", f"{pool}?state=available&sort=-name"),
        ("operations", "/operations/"),
        ("operation (running)", f"/operations/{operation.pk}/"),
        ("helpdesk ?q=user0123", "/helpdesk/?q=user0123"),
        ("helpdesk ?q=LOAD-01", "/helpdesk/?q=LOAD-01"),
        ("datastores", "/datastores/"),
        ("images", "/images/"),
        ("audit", "/audit/"),
    ]
    if world.filler_pool is not None:
        big = f"/pools/{world.filler_pool.pk}/"
        pages += [
            ("big pool", big),
            ("big pool ?sort=datastore, last page", f"{big}?sort=datastore&page={world.last_page}"),
            ("big pool ?sort=-user&page=50", f"{big}?sort=-user&page=50"),
            ("big pool ?q=user12", f"{big}?q=user12"),
            ("big pool ?state=error", f"{big}?state=error"),
        ]
    return pages


def start_refresh_in_thread(admin, pool):
    from django.db import connection

    try:
        return start_refresh(admin, pool)
    finally:
        connection.close()


async def watched_refresh(args, base, world: World, sessions: list[str], processes, access):
    """Run 2: the refresh starts; the watchers open their pages and poll, and the browsers
    browse, for `args.seconds`."""
    samples: list[Sample] = []
    stats: Counter = Counter()
    rng = random.Random(args.seed)
    clients = [Client(base, key, samples) for key in sessions]
    pages = poller_pages(world, args.pollers, args.dashboard_pollers)
    watchers = [
        Watcher(client, page, stats)
        for client, page in zip(clients[: args.pollers], pages, strict=True)
    ]
    browsers = clients[args.pollers :]
    try:
        cpu, load_cpu = CpuMeter(processes), CpuMeter(processes)
        access_from = access.stat().st_size
        started = time.monotonic()
        operation = await asyncio.to_thread(start_refresh_in_thread, world.admin, world.pool)
        waiting = asyncio.create_task(asyncio.to_thread(wait_operation, operation, cpu))
        deadline = started + args.seconds
        tasks = [watcher.watch(deadline, random.Random(rng.random())) for watcher in watchers]
        browsed = browsing_pages(world, operation)
        tasks += [
            browser(client, browsed, deadline, random.Random(rng.random())) for client in browsers
        ]
        await asyncio.gather(*tasks)
        load_ended = time.monotonic()
        result = await waiting
    finally:
        for client in clients:
            await client.close()
    result["observed"] = result["ended"] - started
    result["watched_all"] = result["ended"] <= load_ended
    result["load_seconds"] = load_ended - started
    result["op_window"] = (started, result["ended"])
    result["load_cpu"] = load_cpu.read()
    result["polling"] = stats
    with access.open("rb") as log:
        log.seek(access_from)
        result["server"] = parse_access_log(log.read().decode(errors="replace"))
    return result, samples


# gunicorn's access log, one line per request: path, status, request time (microseconds:
# from the request read to the response written, so without the wait for a free worker),
# and the HX-Request header.
ACCESS_FORMAT = "%(U)s|%(s)s|%(D)s|%({hx-request}i)s"


def parse_access_log(text: str) -> list[tuple[str, int, float]]:
    """(kind, status, ms) per request: kind "fragment" for htmx requests, else "page"."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[2].isdigit() or parts[0].startswith("/accounts/"):
            continue
        kind = "fragment" if parts[3].lower() == "true" else "page"
        rows.append((kind, int(parts[1]) if parts[1].isdigit() else 0, int(parts[2]) / 1000))
    return rows


# -- the report --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stats_row(name: str, samples: list[Sample]) -> tuple:
    ms = [s.ms for s in samples]
    errors = sum(not s.ok for s in samples)
    unchanged = sum(s.status in UNCHANGED for s in samples)
    return (
        name,
        len(samples),
        errors,
        unchanged,
        percentile(ms, 50),
        percentile(ms, 95),
        percentile(ms, 99),
        max(ms, default=math.nan),
    )


def print_table(rows: list[tuple]) -> None:
    print("| requests | n | errors | unchanged (204/286/304) | p50 | p95 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, errors, unchanged, p50, p95, p99, top in rows:
        print(
            f"| {name} | {n} | {errors} | {unchanged} | {p50:.0f} ms | {p95:.0f} ms "
            f"| {p99:.0f} ms | {top:.0f} ms |"
        )


def report(args, run1: dict, run2: dict, samples: list[Sample], processes: Processes) -> bool:
    opened = [s for s in samples if s.kind == "open"]
    measured = [s for s in samples if s.kind != "open"]
    fragments = [s for s in measured if s.kind == "fragment"]
    pages = [s for s in measured if s.kind == "page"]
    start, end = run2["op_window"]
    during = [s for s in measured if start <= s.start <= end]
    overall = stats_row("all", measured)
    errors = sum(not s.ok for s in samples)  # the pages opened count too
    ratio = run2["seconds"] / run1["seconds"]
    load = run2["load_seconds"]

    print()
    print(
        f"## Load: {args.pollers} pollers ({args.dashboard_pollers} on the dashboard) every "
        f"{args.interval:g} s and {args.browsers} browsers for {load:.0f} s, gunicorn "
        f"-w {args.web_workers}, during a refresh of {args.desktops} desktops on "
        f"{args.rq_workers} RQ workers (simulator {args.step:g} s per call, "
        f"{args.filler} filler desktops)"
    )
    print()
    print("Latency seen by the clients (request sent -> last byte):")
    print()
    print_table(
        [
            stats_row("live fragments", fragments),
            stats_row("pages", pages),
            overall,
            stats_row("all, while the refresh ran", during),
            stats_row("pages opened by the pollers (not in 'all')", opened),
        ]
    )
    print()
    print(f"{len(measured) / load:.1f} requests/s over {load:.1f} s")
    polling = run2["polling"]
    print(
        f"Polling: {polling['elements polled']} elements polled, "
        f"{polling['elements stopped by the server']} of them stopped by the server (an "
        f"answer without polling, or 286), {polling['pages opened with nothing to poll']} "
        "pages opened with nothing to poll"
    )
    server = run2["server"]
    if server:
        print()
        print("Server side (gunicorn's request time: without the wait for a free worker):")
        print()
        print("| requests | n | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|")
        for kind, name in (("fragment", "live fragments"), ("page", "pages"), (None, "all")):
            ms = [row[2] for row in server if kind is None or row[0] == kind]
            print(
                f"| {name} | {len(ms)} | {percentile(ms, 50):.0f} ms | {percentile(ms, 95):.0f}"
                f" ms | {percentile(ms, 99):.0f} ms | {max(ms, default=math.nan):.0f} ms |"
            )
    cpu = dict(run2["load_cpu"])
    wall, cores = cpu.pop("wall"), os.cpu_count() or 1
    total = cpu.pop("machine total")
    print()
    print(f"CPU over the load ({wall:.0f} s, {cores} cores = {wall * cores:.0f} core-seconds):")
    print()
    print("| who | CPU seconds | of one core | of the machine |\n|---|---|---|---|")
    for name, seconds in cpu.items():
        print(
            f"| {name} | {seconds:.1f} | {seconds / wall:.0%} | "
            f"{seconds / (total or wall * cores):.0%} |"
        )
    print()
    busy_elsewhere = []
    print(
        "| operation | status | wall time (requested -> finished) | seen by polling "
        "| machine CPU busy | of which other work |"
    )
    print("|---|---|---|---|---|---|")
    for name, run in (("run 1, nobody watching", run1), ("run 2, watched", run2)):
        busy = run["cpu"]["machine busy"] / run["cpu"]["machine total"]
        other = run["cpu"][OTHER] / run["cpu"]["machine total"]
        print(
            f"| {name} | {run['status']} | {run['seconds']:.1f} s | {run['observed']:.1f} s "
            f"| {busy:.0%} | {other:.0%} |"
        )
        if other > 0.10:
            busy_elsewhere.append(name)
    print(f"| ratio run 2 / run 1 | | {ratio:.3f} | | | |")
    if run2["load_cpu"][OTHER] > 0.10 * run2["load_cpu"]["machine total"]:
        busy_elsewhere.append("the load")
    if busy_elsewhere:
        print(
            f"\nWARNING: other work used more than 10% of the machine during "
            f"{' and '.join(busy_elsewhere)}: these figures say little; run again when the "
            f"machine is quiet."
        )
    if not run2["watched_all"]:
        print(
            f"\n(the watched refresh ended after the load stopped: "
            f"{run2['observed']:.0f} s > {load:.0f} s)"
        )
    print()
    print("Per request kind, slowest p99 first:")
    print()
    by_label = defaultdict(list)
    for s in samples:
        by_label[s.label].append(s)
    rows = [stats_row(label, group) for label, group in by_label.items()]
    print_table(sorted(rows, key=lambda row: -row[6]))
    causes = Counter(f"{s.label}: {s.error}" for s in samples if not s.ok)
    if causes:
        print("\nErrors:")
        for what, n in causes.most_common():
            print(f"  {n} x {what}")
        print("\ngunicorn's log (last lines):\n" + processes.tail("gunicorn", 30))
    statuses = Counter(s.status for s in samples)
    print(f"\nstatuses: {dict(sorted(statuses.items(), key=lambda kv: str(kv[0])))}")

    checks = [
        (f"errors {errors} == 0", errors == 0),
        (f"p99 {overall[6]:.0f} ms < {P99_TARGET_MS:.0f} ms", overall[6] < P99_TARGET_MS),
        (f"wall-time ratio {ratio:.3f} <= {RATIO_TARGET:.2f}", ratio <= RATIO_TARGET),
        (
            f"both refreshes succeeded ({run1['status']}, {run2['status']})",
            run1["status"] == run2["status"] == "succeeded",
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return all(ok for _, ok in checks)


# -- main --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dashboard_pollers > args.pollers:
        raise SystemExit("--dashboard-pollers cannot be more than --pollers")
    import redis

    queues = redis.Redis.from_url(args.redis_url)
    if queues.dbsize():
        raise SystemExit(f"{args.redis_url} is not empty: give --redis-url a database nobody uses")
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-load-"))
    processes = Processes(folder)
    database_url, created = args.database_url, False
    try:
        if not database_url:
            database_url = create_database(args.admin_url)
            created = True
        os.environ.update(
            PORTAL_DATA_DIR=str(folder),
            DATABASE_URL=database_url,
            REDIS_URL=args.redis_url,
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",
            SECURE_HSTS_SECONDS="0",
            SIMULATOR_STEP_SECONDS="0",
            POLL_SECONDS=str(args.interval),
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="portal.settings",
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        world = build_inventory(args.desktops, args.filler)
        find_servers(args.redis_url)
        sessions = [session_cookie(world.admin) for _ in range(args.pollers + args.browsers)]

        env = {**os.environ, "SIMULATOR_STEP_SECONDS": str(args.step)}
        manage = [sys.executable, "manage.py", "rqworker", "--verbosity", "0"]
        for i in range(args.rq_workers):
            scheduler = ["--with-scheduler"] if i == 0 else []
            processes.start(f"rqworker-{i + 1}", [*manage, *scheduler, "default"], env)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        gunicorn = [sys.executable, "-m", "gunicorn", "portal.wsgi"]
        gunicorn += ["-w", str(args.web_workers), "-b", f"127.0.0.1:{port}"]
        access = folder / "access.log"
        gunicorn += ["--log-level", "warning", "--access-logfile", str(access)]
        processes.start("gunicorn", [*gunicorn, "--access-logformat", ACCESS_FORMAT], env)
        wait_rq_workers(args.rq_workers, processes)
        wait_web(base, processes)
        print(f"{args.rq_workers} RQ workers and gunicorn -w {args.web_workers} on {base}")

        # A few desktops first, unmeasured: every process has done the work once.
        some = list(world.pool.desktops.order_by("name")[:12])
        warm = timed_refresh(world.admin, world.pool, some)
        print(f"warm-up refresh: {warm['seconds']:.1f} s, {warm['status']}")
        run1 = timed_refresh(world.admin, world.pool, cpu=CpuMeter(processes))
        print(f"run 1, nobody watching: {run1['seconds']:.1f} s, {run1['status']}")
        processes.check()
        run2, samples = asyncio.run(watched_refresh(args, base, world, sessions, processes, access))
        print(f"run 2, watched: {run2['seconds']:.1f} s, {run2['status']}")
        processes.check()
        return 0 if report(args, run1, run2, samples, processes) else 1
    finally:
        processes.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet
            pass
        if created:
            drop_database(args.admin_url, database_url)
        queues.flushdb()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
