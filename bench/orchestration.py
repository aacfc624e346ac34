"""Orchestration cost: what does running an operation through the job queue cost per desktop,
next to the same worker running empty RQ jobs? (issue 9, "Orchestration cost")

Runs the real thing: one `rqworker --with-scheduler` process (as `make run` starts it), the
job queue's Redis, a fresh database (SQLite, or PostgreSQL with BENCH_DATABASE_URL) and the
simulator at zero latency, its inventory in a Redis of its own so that its traffic is
counted apart from the queue's. The hypervisor endpoint and the pools keep their default
concurrency limits (8 provisioning, 12 maintenance). For each N, in rounds:

- the baseline: 5 x N empty RQ jobs (a function that returns None, enqueued with the queue's
  defaults in one pipeline), i.e. as many empty jobs per desktop as a provision or a refresh
  has steps (five each), through the same worker; measured before and after each round's
  operations, and their mean taken, as other load on the machine drifts;
- a provision of a new pool of N desktops (from `services.create_pool` until the operation
  has ended, as its page would show);
- a refresh of those N desktops (from `services.start_operation`).

    ratio = operation's wall time / baseline wall time   (the same N: per desktop, both)

Redis calls are the commands Redis executed (`INFO commandstats` deltas: commands inside
MULTI/EXEC and scripts count one each), on the queue's Redis and, apart, on the simulator's.
"jobs" is how many RQ jobs the worker took (its dequeue calls: BLMOVE from one queue, BLPOP
from several, as the portal's workers serve the urgent queue too). Last, at the smallest N, the same
provision and refresh run once more under MONITOR on the queue's Redis, to break its calls
down by source and command (slower: not timed).

Usage: .venv/bin/python bench/orchestration.py [N ...]        (default: 100 1000)
  BENCH_ROUNDS=R               rounds per N (default 3 up to N=200, else 1)
  BENCH_DATABASE_URL=postgres://user@host/name   PostgreSQL: that database is dropped and
                               created again
  REDIS_URL=redis://host/db    the queue on that Redis instead of an embedded one; as others
                               may use the same server, its calls are then counted by
                               MONITOR, filtered on the database number (which slows the
                               timed runs down)
  SIMULATOR_REDIS_URL=...      the simulator's Redis (default: a second embedded Redis)
  BENCH_MONITOR_LOG=path       also write every command of the breakdown pass there
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from composer import step_timings  # no Django: its hash's key

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = 5  # a provision and a refresh are both five steps (composer/steps.py)


def dequeues(calls) -> int:
    """RQ jobs a worker took: one BLMOVE (one queue) or BLPOP/LPOP (several) each."""
    return sum(calls.get(command, 0) for command in ("blmove", "blpop", "lpop"))


# -- the baseline's jobs (the worker imports them as bench.orchestration.*) ------------------


def empty_job() -> None:
    return None


def last_job(path: str) -> None:
    """An empty job that leaves a mark: the worker runs the queue in order, so when the mark
    is there every earlier job has run."""
    Path(path).touch()


# -- counting Redis calls --------------------------------------------------------------------


class CommandStats:
    """Commands executed by one Redis server, from INFO commandstats."""

    def __init__(self, conn):
        self.conn = conn

    def snapshot(self) -> collections.Counter:
        stats = self.conn.info("commandstats")
        return collections.Counter(
            {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
        )

    def since(self, before: collections.Counter) -> collections.Counter:
        delta = self.snapshot() - before
        delta["info"] -= 1  # our own INFO
        return +delta


class Monitor:
    """Commands run on one database of a Redis server, as MONITOR shows them, with their
    arguments (Lua scripts' own commands included). take() returns those seen since the last
    take(), exactly: it sends a marker (ECHO) and reads up to it."""

    def __init__(self, url: str):
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self.db = int(self.client.connection_pool.connection_kwargs.get("db", 0))
        self._commands: list[tuple[str, tuple[str, ...]]] = []
        self._marks: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._closing = False

    def __enter__(self):
        ready = threading.Event()
        self._ready = ready
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        self.take()
        return self

    def __exit__(self, *exc):
        self._closing = True
        self.take()
        self._thread.join(10)

    def _run(self):
        import redis

        with redis.Redis.from_url(self.url).monitor() as monitor:
            self._ready.set()
            for entry in monitor.listen():
                if entry["db"] != self.db:
                    continue
                words = entry["command"].split(" ")
                if not words or not words[0]:
                    continue
                command = (words[0].lower(), tuple(words[1:]))
                if command[0] == "echo" and command[1] and command[1][0] in self._marks:
                    self._marks[command[1][0]].set()
                    if self._closing:
                        return
                    continue
                with self._lock:
                    self._commands.append(command)

    def take(self) -> list[tuple[str, tuple[str, ...]]]:
        mark = f"bench-mark-{uuid.uuid4().hex}"
        seen = self._marks[mark] = threading.Event()
        self.client.echo(mark)
        if not seen.wait(30):
            raise RuntimeError("MONITOR fell behind")
        del self._marks[mark]
        with self._lock:
            taken, self._commands = self._commands, []
        return taken


class Counter:
    """Calls on the queue's or the simulator's Redis: commandstats on our own server, MONITOR
    filtered on our database number on a server others share."""

    def __init__(self, url: str, own: bool):
        import redis

        self.stats = CommandStats(redis.Redis.from_url(url))
        self.monitor = None if own else Monitor(url).__enter__()

    def start(self):
        if self.monitor:
            self.monitor.take()
            return None
        return self.stats.snapshot()

    def stop(self, before) -> collections.Counter:
        if self.monitor:
            return collections.Counter(cmd for cmd, _ in self.monitor.take())
        return self.stats.since(before)

    def close(self):
        if self.monitor:
            self.monitor.__exit__(None, None, None)


# -- what each call is for -------------------------------------------------------------------

ENQUEUE = "enqueue (run_operation and run_desktop jobs)"
BOOKKEEPING = "worker: dequeue, start and end of each job"
RESULTS = "worker: results kept (result_ttl)"
HEARTBEATS = "worker: heartbeats and state"
CONNECT = "a new Redis client (HELLO, INFO server)"
SCHEDULER = "rq scheduler polling (--with-scheduler), scheduled dispatch jobs"
CARRY_ON = "run_desktop: may it carry on? (worker asked to stop, urgent work waiting)"
STEP_TIMINGS = "step durations for /metrics (composer/step_timings.py)"
OTHER = "other"
SOURCES = [
    ENQUEUE,
    BOOKKEEPING,
    RESULTS,
    HEARTBEATS,
    CONNECT,
    SCHEDULER,
    CARRY_ON,
    STEP_TIMINGS,
    OTHER,
]


def classify(calls: list[tuple[str, tuple[str, ...]]]) -> dict[str, collections.Counter]:
    """Each command to a source, by its name and key; MULTI and EXEC go with the first
    command they wrap."""
    by_source: dict[str, collections.Counter] = {s: collections.Counter() for s in SOURCES}
    multi = 0  # MULTI seen, waiting for its first command
    current = OTHER
    for cmd, args in calls:
        if cmd == "multi":
            multi += 1
            continue
        source = current if cmd == "exec" else _source(cmd, args)
        if multi:
            by_source[source]["multi"] += multi
            multi = 0
        by_source[source][cmd] += 1
        current = source
    return by_source


def _source(cmd: str, args: tuple[str, ...]) -> str:
    key = args[0] if args else ""
    text = " ".join(args)
    if cmd in ("hello", "client", "select", "auth", "ping") or (cmd == "info" and "server" in key):
        return CONNECT
    if key == step_timings.KEY:
        return STEP_TIMINGS
    if cmd == "hexists" and "shutdown_requested_date" in text:
        return CARRY_ON
    if cmd == "llen" and key == "rq:queue:urgent":
        return CARRY_ON  # does urgent (helpdesk) work wait for a worker?
    if "scheduler" in key or ":scheduled:" in key or "dispatch-endpoint" in text:
        return SCHEDULER
    if cmd in ("script", "evalsha"):
        return SCHEDULER  # the scheduler's lock script
    if key.startswith(("rq:results:", "rq:finished:")):
        return RESULTS
    if key.startswith("rq:worker:") and (
        "last_heartbeat" in text or cmd == "expire" or (cmd == "hset" and " state " in f" {text} ")
    ):
        return HEARTBEATS
    if cmd == "exists" and key == "rq:suspended":
        return HEARTBEATS
    if cmd == "hset" and key.startswith("rq:job:") and "status queued" in text:
        return ENQUEUE
    if cmd == "hset" and key.startswith("rq:job:") and "enqueued_at" in text:
        return ENQUEUE
    if cmd == "rpush" and key.startswith("rq:queue:") or (cmd == "sadd" and key == "rq:queues"):
        return ENQUEUE
    if key.startswith("rq:"):
        return BOOKKEEPING
    return OTHER


# -- the run ---------------------------------------------------------------------------------


def main(ns: list[int]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-orch-"))
    redis_url = os.environ.get("REDIS_URL")
    sim_url = os.environ.get("SIMULATOR_REDIS_URL")
    shared_queue, shared_sim = bool(redis_url), bool(sim_url)
    database_url = os.environ.get("BENCH_DATABASE_URL")
    from portal import embedded_redis

    servers = []
    worker = None
    counters = []
    try:
        if not redis_url:
            (folder / "queue").mkdir()
            servers.append(embedded_redis.start(folder / "queue.sock", folder / "queue", False))
            redis_url = f"unix://{folder / 'queue.sock'}"
        if not sim_url:
            (folder / "sim").mkdir()
            servers.append(embedded_redis.start(folder / "sim.sock", folder / "sim", False))
            sim_url = f"unix://{folder / 'sim.sock'}"
        if database_url:
            fresh_postgres(database_url)
        os.environ.update(
            PORTAL_DATA_DIR=str(folder),
            DATABASE_URL=database_url or f"sqlite:///{folder / 'bench.sqlite3'}",
            REDIS_URL=redis_url,
            SIMULATOR_REDIS_URL=sim_url,
            SIMULATOR_STEP_SECONDS="0",
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="portal.settings",
        )
        import django

        django.setup()
        import redis
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        redis.Redis.from_url(redis_url).flushdb()
        redis.Redis.from_url(sim_url).flushdb()
        admin, version, datastore = setup()
        queue_counter = Counter(redis_url, own=not shared_queue)
        sim_counter = Counter(sim_url, own=not shared_sim)
        counters = [queue_counter, sim_counter]
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rqworker",
                "--with-scheduler",
                "--verbosity",
                "0",
                "default",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            start_new_session=True,
        )
        wait_worker_ready()
        database = "PostgreSQL" if database_url else "SQLite"
        print(f"{database}; queue Redis {redis_url}; simulator Redis {sim_url}; one worker")
        rows = []
        for n in ns:
            rows.extend(measure(n, admin, version, datastore, queue_counter, sim_counter, folder))
        report(rows)
        breakdown(min(ns), admin, version, datastore, redis_url)
    finally:
        for counter in counters:
            counter.close()
        if worker is not None:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        for server in servers:
            embedded_redis.stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_postgres(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup():
    from django.contrib.auth.models import Group, User

    from composer import endpoint_drivers
    from composer.inventory import sync_datastores
    from pools.models import BaseImage, HypervisorEndpoint, ImageVersion

    endpoint = HypervisorEndpoint.objects.create(name="bench")  # default limits
    sim = endpoint_drivers.for_endpoint(endpoint)
    sim.reset()
    sim.add_datastore("ds-1", 64 * 1024 * 1024)
    sim.add_parent_vm("gold", ["v1"])
    (datastore,) = sync_datastores(endpoint)
    image = BaseImage.objects.create(endpoint=endpoint, name="Win", parent_vm="gold")
    version = ImageVersion.objects.create(image=image, snapshot="v1", disk_mb=40960, used_mb=20480)
    admin = User.objects.create_user("bench")
    admin.groups.add(Group.objects.get(name="Administrators"))
    return admin, version, datastore


def wait_worker_ready(timeout: float = 60) -> None:
    from rq import Worker

    from composer.queue import queue

    q = queue()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Worker.count(connection=q.connection):
            time.sleep(2)  # its scheduler starts too
            return
        time.sleep(0.2)
    raise RuntimeError("the worker did not start")


def measure(n, admin, version, datastore, queue_counter, sim_counter, folder) -> list[dict]:
    rounds = int(os.environ.get("BENCH_ROUNDS") or (3 if n <= 200 else 1))
    rows = []
    before = baseline(n, queue_counter, folder)
    print(f"N={n}: baseline, {STEPS * n} empty jobs: {before['seconds']:.2f} s")
    for r in range(1, rounds + 1):
        pool_name = f"Bench{n}r{r}"
        provision = lambda name=pool_name: create_pool(admin, version, datastore, name, n)  # noqa: E731
        again = lambda name=pool_name: refresh(admin, name)  # noqa: E731
        measured = [
            timed_operation(n, "provision", provision, queue_counter, sim_counter),
            timed_operation(n, "refresh", again, queue_counter, sim_counter),
        ]
        after = baseline(n, queue_counter, folder)
        print(f"N={n}: baseline, {STEPS * n} empty jobs: {after['seconds']:.2f} s")
        base_seconds = (before["seconds"] + after["seconds"]) / 2
        rows.append({**after, "round": r, "seconds": base_seconds, "ratio": 1.0})
        for row in measured:
            row.update(round=r, ratio=row["seconds"] / base_seconds)
            rows.append(row)
            print(
                f"N={n} round {r}: {row['name']} {row['seconds']:.2f} s "
                f"({row['ratio']:.2f} x baseline), {row['jobs']} jobs, "
                f"{row['queue'] / n:.1f} queue and {row['sim'] / n:.1f} simulator calls "
                "per desktop"
            )
        before = after
    return rows


def baseline(n, queue_counter, folder) -> dict:
    from rq import Queue

    from composer.queue import queue

    q = queue()
    mark = folder / f"baseline-{uuid.uuid4().hex}.done"
    module = "bench.orchestration"
    jobs = [Queue.prepare_data(f"{module}.empty_job") for _ in range(STEPS * n - 1)]
    jobs.append(Queue.prepare_data(f"{module}.last_job", (str(mark),)))
    before = queue_counter.start()
    started = time.monotonic()
    q.enqueue_many(jobs)
    deadline = started + 1800
    while not mark.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the baseline's jobs did not run")
        time.sleep(0.01)
    seconds = time.monotonic() - started
    time.sleep(0.2)  # the last job's own bookkeeping
    calls = queue_counter.stop(before)
    return {
        "n": n,
        "name": f"baseline ({STEPS} empty jobs per desktop)",
        "seconds": seconds,
        "jobs": dequeues(calls),
        "queue": sum(calls.values()),
        "queue_by_command": calls,
        "sim": 0,
    }


def create_pool(admin, version, datastore, name, n):
    from composer import services

    return services.create_pool(
        admin,
        services.PoolSpec(
            name=name,
            naming_pattern=f"B{uuid.uuid4().hex[:4].upper()}-{{n:fixed=4}}",
            size=n,
            datastores=[datastore],
            image_version=version,
            overcommit=0,
        ),
    )


def refresh(admin, pool_name):
    from composer import services
    from pools.models import Pool

    return services.start_operation(admin, Pool.objects.get(name=pool_name), "refresh", None)


def wait_done(operation, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        operation.refresh_from_db()
        if not operation.is_active:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{operation} did not end")
        time.sleep(0.01)


def timed_operation(n, name, start, queue_counter, sim_counter) -> dict:
    queue_before = queue_counter.start()
    sim_before = sim_counter.start()
    started = time.monotonic()
    operation = start()
    wait_done(operation)
    seconds = time.monotonic() - started
    assert operation.status == "succeeded", (name, operation.status)
    time.sleep(0.2)  # the last job's own bookkeeping
    queue_calls = queue_counter.stop(queue_before)
    sim_calls = sim_counter.stop(sim_before)
    return {
        "n": n,
        "name": name,
        "seconds": seconds,
        "jobs": dequeues(queue_calls),
        "queue": sum(queue_calls.values()),
        "queue_by_command": queue_calls,
        "sim": sum(sim_calls.values()),
    }


def report(rows: list[dict]) -> None:
    print()
    print(
        "| N | round | run | wall time | per desktop | x baseline | jobs "
        "| queue calls/desktop | simulator calls/desktop |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        n = row["n"]
        print(
            f"| {n} | {row['round']} | {row['name']} | {row['seconds']:.2f} s "
            f"| {1000 * row['seconds'] / n:.1f} ms | {row['ratio']:.2f} | {row['jobs']} "
            f"| {row['queue'] / n:.1f} | {row['sim'] / n:.1f} |"
        )
    print("\nMedians over the rounds:")
    for key in sorted({(row["n"], row["name"]) for row in rows}):
        same = [row for row in rows if (row["n"], row["name"]) == key]
        print(
            f"  N={key[0]} {key[1]}: x baseline {statistics.median(r['ratio'] for r in same):.2f}"
            f", queue calls/desktop {statistics.median(r['queue'] for r in same) / key[0]:.1f}"
            f", simulator calls/desktop {statistics.median(r['sim'] for r in same) / key[0]:.1f}"
        )
    for row in rows:
        if row["round"] == 1:
            print(f"\nN={row['n']} {row['name']}: queue calls by command, per desktop")
            print("  " + _per_desktop(row["queue_by_command"], row["n"]))


def breakdown(n, admin, version, datastore, redis_url) -> None:
    """The same operations at N under MONITOR: the queue's calls by source and command."""
    print(f"\nThe queue's calls by source (N={n}, under MONITOR, not timed), per desktop:")
    pool_name = f"Monitored{n}"
    log = os.environ.get("BENCH_MONITOR_LOG")
    with Monitor(redis_url) as monitor:
        for name, start in (
            ("provision", lambda: create_pool(admin, version, datastore, pool_name, n)),
            ("refresh", lambda: refresh(admin, pool_name)),
        ):
            monitor.take()
            wait_done(start())
            time.sleep(0.2)  # the last job's own bookkeeping
            calls = monitor.take()
            if log:
                with open(log, "a") as out:
                    out.write(f"--- {name}\n")
                    out.writelines(f"{cmd} {' '.join(args)}\n" for cmd, args in calls)
            print(f"\n{name}: {len(calls) / n:.1f}")
            for source, commands in classify(calls).items():
                total = sum(commands.values())
                if total:
                    print(f"  {source}: {total / n:.2f}  ({_per_desktop(commands, n)})")


def _per_desktop(commands: collections.Counter, n: int) -> str:
    return ", ".join(f"{cmd} {count / n:.2f}" for cmd, count in commands.most_common())


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000])
