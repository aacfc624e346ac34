"""`make run`: everything the portal needs, in one foreground command.

Starts the embedded Redis (unless REDIS_URL points elsewhere), migrates, loads the demo once,
then runs one RQ worker with the scheduler, the cron process and the web server. A child
that exits is started again (after 1 s, doubling to 30 s if it keeps exiting), so one
crash does not stop the portal. Ctrl-C stops all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from portal import embedded_redis, vcsim_demo
from portal.management.commands.demo_logins import demo_logins

# A child that ran this long was healthy: if it exits, start it again after 1 s.
HEALTHY_RUN = 60.0


class _Ended:
    """Stands for a child that is not running and will not be started again."""

    returncode = 0

    def poll(self):
        return 0


class Command(BaseCommand):
    help = "Run Redis (embedded), a worker and the web server until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("WORKERS", "1")),
            help="RQ workers to start (the first also runs the scheduler).",
        )
        parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")
        parser.add_argument(
            "--vcsim",
            action="store_true",
            default=os.environ.get("VCSIM", "") not in ("", "0"),
            help="Also run govmomi's vCenter simulator with a demo pool on the vSphere driver.",
        )

    def handle(self, *args, port: int, workers: int, no_demo: bool, vcsim: bool, **options):
        self.children: list[tuple[str, subprocess.Popen]] = []
        # How to start each child again, and when it was last started (for the back-off).
        self.starters: dict[str, Callable[[], subprocess.Popen]] = {}
        self.backoff: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.stopping = False
        # Before anything starts: a second `make run` must not start a second worker and Redis
        # client for the first one's data, then fail on the port.
        _check_port_free(port)
        self.port, self.announced = port, False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        try:
            self._start(port, max(1, workers), no_demo, vcsim)
            self._watch()
        finally:
            self._shutdown()

    def _start(self, port: int, workers: int, no_demo: bool, vcsim: bool) -> None:
        socket_path = embedded_redis.socket_from_url(settings.REDIS_URL)
        if "REDIS_URL" not in os.environ and socket_path is not None:
            if embedded_redis.is_answering(socket_path):
                self.stdout.write(f"Using the Redis already answering on {socket_path}")
            else:
                self._add(
                    "redis",
                    lambda: embedded_redis.start(socket_path, settings.DATA_DIR, persist=True),
                )
                self.stdout.write(f"Redis ({embedded_redis.server_binary()}) on {socket_path}")

        call_command("migrate", interactive=False, verbosity=0)
        if not no_demo:
            call_command("demo_data")

        if vcsim:
            self._start_vcsim()

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # Workers log warnings and errors only: rq's four INFO lines per job would bury the
        # banner (pages show what the jobs do).
        quiet = ["--verbosity", "0"]
        self._spawn("worker", [*manage, "rqworker", *quiet, "--with-scheduler", "default"])
        for n in range(2, workers + 1):
            self._spawn(f"worker {n}", [*manage, "rqworker", *quiet, "default"])
        # The reconciler every minute: resumes work of dead workers, ends stuck desktops.
        self._spawn("cron", [*manage, "runcron", "--logging-level", "WARNING"])
        self._spawn("web", [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"])
        self._print_banner()

    def _start_vcsim(self) -> None:
        port = int(os.environ.get("VCSIM_PORT", "8989"))
        try:
            process = vcsim_demo.start(port)
        except vcsim_demo.VcsimUnavailable as exc:
            self.stderr.write(f"No vCenter simulator: {exc}")
            self.stderr.write(
                "Install Debian's golang-go and golang-github-vmware-govmomi-dev for it."
            )
            return
        self.children.append(("vcsim", process))
        admin = User.objects.filter(groups__name="Administrators").order_by("pk").first()
        vcsim_demo.load(port, admin)
        self.stdout.write(
            f"vCenter simulator on http://127.0.0.1:{port}/sdk (endpoint {vcsim_demo.ENDPOINT})"
        )

    def _spawn(self, name: str, args: list[str]) -> None:
        # Own session: Ctrl-C reaches only this command, which stops the children in order.
        self._add(
            name,
            lambda: subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL),
        )

    def _add(self, name: str, start: Callable[[], subprocess.Popen]) -> None:
        self.starters[name] = start
        self.started_at[name] = time.monotonic()
        self.children.append((name, start()))

    def _print_banner(self, up: bool = False) -> None:
        state = "is up" if up else "is starting"
        banner = [f"Portal {state}: http://127.0.0.1:{self.port}/  (Ctrl-C stops everything)"]
        banner += demo_logins(settings.DATA_DIR)
        if up:
            banner.append("(`manage.py demo_logins` prints the logins again.)")
        self.stdout.write(self.style.SUCCESS("\n".join(banner)))

    def _watch(self) -> None:
        while not self.stopping:
            if not self.announced and _answers(self.port):
                # Again once it answers, below whatever the children printed on starting.
                self.announced = True
                self._print_banner(up=True)
            for index, (name, process) in enumerate(self.children):
                if process.poll() is None or self.stopping:
                    continue
                if name not in self.starters:  # the vCenter simulator: its inventory is gone
                    self.stderr.write(f"{name} exited with code {process.returncode}.")
                    self.children[index] = (name, _Ended())
                    continue
                self.children[index] = (name, self._restart(name, process.returncode))
            time.sleep(0.5)

    def _restart(self, name: str, code: int) -> subprocess.Popen:
        ran_for = time.monotonic() - self.started_at[name]
        delay = 1.0 if ran_for > HEALTHY_RUN else min(30.0, self.backoff.get(name, 0.5) * 2)
        self.backoff[name] = delay
        self.stderr.write(f"{name} exited with code {code}; starting it again in {delay:.0f} s.")
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.stopping:
            return _Ended()
        self.started_at[name] = time.monotonic()
        return self.starters[name]()

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        # Web first (no new requests), then the worker (finishes its current job), Redis last
        # (saves the queues and the simulator's inventory for the next run).
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15 if name.startswith("worker") else 10)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in time; killing it.")
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.stdout.write("Stopped.")


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise CommandError(
                f"Port {port} on 127.0.0.1 is in use ({exc.strerror}): is the portal already "
                f"running (another `make run`)? Stop it, or choose another port: "
                f"make run PORT={port + 1}"
            ) from None


def _answers(port: int) -> bool:
    """Whether the web server accepts connections yet."""
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0
