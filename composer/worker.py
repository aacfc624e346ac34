"""The RQ worker the portal runs (settings.RQ["WORKER_CLASS"]).

It outlives a Redis outage. rq's own loop retries only while it waits for a job: Redis going
away at any other moment (a heartbeat, a registry clean-up, the end of a job) ends the loop
and the process exits with code 1, so a fleet needed restarting after every Redis restart.
This worker instead starts its loop again, under a fresh name (the old one may still be
registered in a Redis that kept its data), after a back-off of 1 s doubling to 30 s, until
it is asked to stop. A job running when Redis went away finishes in its work horse; what
it could not queue, the reconciler queues again (composer/queue.py).

It serves the urgent queue first, whatever queues its command line names (composer/queue.py):
the jobs of helpdesk-sized operations, which must never wait behind bulk work, or not run at
all on a fleet started with `rqworker default`.

It keeps one vCenter session per endpoint for all the jobs it runs: each job runs in a
forked work horse, which takes the session cookie the worker's earlier jobs left in Redis
(composer/vsphere_sessions.py) instead of logging in again, and leaves it there when it ends.
When the worker stops it logs those sessions out, so vCenter's session cap is not used up by
workers that come and go. (A worker killed outright leaves its sessions to vCenter's idle
timeout, 30 minutes.)
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
from contextlib import suppress
from uuid import uuid4

from rq import Worker
from rq.exceptions import StopRequested

# The jobs and every driver are imported here, in the worker, once: each job runs in a work
# horse forked from it, which would otherwise import them again for every job (some 50 ms
# for the drivers alone, pyvmomi's included; bench/orchestration.py).
from composer import endpoint_drivers, jobs, log_context, outages, vsphere_sessions  # noqa: F401
from composer.drivers import registry
from composer.queue import URGENT

registry.registrations()

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
# A loop that ran this long was healthy: the next failure starts the back-off again.
HEALTHY_RUN = 60.0


class PortalWorker(Worker):
    def __init__(self, queues, *args, **kwargs):
        queues = list(queues) if isinstance(queues, (list, tuple)) else [queues]
        name = lambda q: q if isinstance(q, str) else q.name  # noqa: E731
        # The urgent queue first (rq takes queues in order); a name becomes a queue on the
        # worker's connection.
        queues = [URGENT, *(q for q in queues if name(q) != URGENT)]
        super().__init__(queues, *args, **kwargs)
        # Inherited by every work horse this worker forks: whose sessions they use.
        os.environ[vsphere_sessions.OWNER_VARIABLE] = f"{socket.gethostname()}:{os.getpid()}"
        # What is loaded now (Django, the jobs, every driver's library) stays as it is in
        # each work horse: out of the garbage collector's sight, so a forked horse does not
        # walk, and copy page by page, the worker's whole heap (bench/orchestration.py).
        gc.freeze()

    def work(self, burst: bool = False, **kwargs) -> bool:
        if burst or kwargs.get("max_jobs") or kwargs.get("max_idle_time"):
            # Runs meant to end (tests, benchmarks): rq's loop as it is.
            return super().work(burst=burst, **kwargs)
        worked, backoff = False, FIRST_BACKOFF
        while True:
            started = time.monotonic()
            try:
                worked = super().work(**kwargs) or worked
            except (StopRequested, KeyboardInterrupt):
                return worked
            except Exception:
                # Most often Redis unreachable while starting or registering the worker's end.
                log.exception("worker %s: its loop failed", self.name)
            if self._asked_to_stop():
                return worked
            # rq logged why the loop ended (Redis unreachable, most often).
            self._forget_failed_loop()
            if time.monotonic() - started > HEALTHY_RUN:
                backoff = FIRST_BACKOFF
            log.error("worker %s: starting again in %.0f s", self.name, backoff)
            if not self._pause(backoff):
                return worked
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _asked_to_stop(self) -> bool:
        # rq sets the date on every stop request (a signal, `rq` shutdown command); the flag
        # only when the request came during a job.
        return self._stop_requested or self._shutdown_requested_date is not None

    def _forget_failed_loop(self) -> None:
        """Leave nothing of the failed loop behind, and take a new name for the next one."""
        with suppress(Exception):
            self.unsubscribe()
        self.pubsub_thread = None
        with suppress(Exception):
            self.register_death()
        self.name = uuid4().hex
        self._stop_requested = False

    def _pause(self, seconds: float) -> bool:
        """Sleep, unless SIGTERM or SIGINT asks the worker to stop: then return False. (rq's
        own handlers would write the request to Redis, which may be the thing that is down.)"""
        stop: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: stop.append(signum))
        deadline = time.monotonic() + seconds
        while not stop and time.monotonic() < deadline:
            time.sleep(0.1)
        return not stop

    def execute_job(self, job, queue):
        # The job's lines, rq's own and those of its work horse (forked with this context),
        # carry its id and this worker's name (composer/log_context.py).
        with log_context.bound(job_id=job.id, worker=self.name):
            return super().execute_job(job, queue)

    def handle_exception(self, job, *exc_info):
        # A job that failed because the database is unreachable: note the outage for the
        # dashboard (composer/outages.py). The reconciler hands the desktop out again once
        # the database is back.
        if outages.is_database_unreachable(exc_info[1]):
            outages.note_database_unreachable(f"worker {self.name}", exc_info[1])
        super().handle_exception(job, *exc_info)

    def teardown(self):
        if not self.is_horse:
            try:
                endpoint_drivers.log_out_all(os.environ[vsphere_sessions.OWNER_VARIABLE])
            except Exception:  # stopping must not fail on a vCenter that is gone
                log.exception("vCenter sessions of this worker not logged out")
        super().teardown()
