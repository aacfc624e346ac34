"""Whether a worker, an rq job or a desktop's runner is still alive: one place for the rule
the reconciler acts on (composer/reconciler.py, composer/endpoint_checks.py) and the
dashboard shows (portal/dashboard.py).

On this host a dead process shows at once (its pid); elsewhere, by a heartbeat that stopped:
a busy rq worker beats every job_monitoring_interval (30 s by default), so two missed beats
(HEARTBEAT_GRACE) mean it is gone, and a crashed host is noticed within about two minutes.
An idle worker blocks on Redis and beats only every few minutes; its key expires if it dies.
"""

from __future__ import annotations

import datetime
import os
import socket
from datetime import timedelta

from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

from composer.models import DesktopTask

TaskStatus = DesktopTask.Status

HEARTBEAT_GRACE = timedelta(seconds=60)


def pid_alive(pid: int) -> bool:
    """Whether the process `pid` on this host is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent has not reaped it yet is a zombie: dead all the same.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def process_gone(worker: Worker) -> bool:
    """A worker of this host whose process is dead."""
    return _gone_here(worker.hostname, worker.pid)


def _gone_here(hostname: str | None, pid: int | None) -> bool:
    return bool(hostname == socket.gethostname() and pid and not pid_alive(pid))


def heartbeat_age(worker: Worker, now=None) -> timedelta | None:
    """How long ago the worker last beat (None: rq has no beat for it)."""
    return _age(worker.last_heartbeat, now)


def _age(beat: datetime.datetime | None, now=None) -> timedelta | None:
    if beat is None:
        return None
    if timezone.is_naive(beat):
        beat = timezone.make_aware(beat, datetime.UTC)
    return (now or timezone.now()) - beat


def worker_answering(worker: Worker, state: str, age: timedelta | None) -> bool:
    """What the dashboard shows: a worker answers unless its process here is dead or, busy,
    it has not beaten within HEARTBEAT_GRACE (an idle worker's beat is not looked at)."""
    return answering(worker.hostname, worker.pid, state, age)


def answering(hostname: str | None, pid: int | None, state: str, age: timedelta | None) -> bool:
    """worker_answering's rule on the fields of rq's worker hash, for readers that fetch
    them for every worker at once (composer/runtime_state.py)."""
    if _gone_here(hostname, pid):
        return False
    if state == "busy":
        return age is not None and age <= HEARTBEAT_GRACE
    return True


def scheduler_answering(
    hostname: str | None, pid: int | None, last_heartbeat: datetime.datetime | None, now=None
) -> bool:
    """Whether rq's scheduler (the process a `rqworker --with-scheduler` forks) still runs:
    it beats every second, so a beat older than HEARTBEAT_GRACE, or its process dead on
    this host, means it is gone even before its lock expires (a minute after its last beat)."""
    if _gone_here(hostname, pid):
        return False
    age = _age(last_heartbeat, now)
    return age is not None and age <= HEARTBEAT_GRACE


def worker_alive(name: str, conn) -> bool:
    """Whether the worker that took a job still runs it (the reconciler): listed, its process
    here alive, and its beat (when rq has one) within HEARTBEAT_GRACE."""
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=conn)
    if worker is None or process_gone(worker):
        return False
    age = heartbeat_age(worker)
    return age is None or age <= HEARTBEAT_GRACE


def job_alive(job_id: str, conn) -> bool:
    """Whether the rq job still exists and will run or is running on a live worker."""
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.QUEUED:
        # Queued means waiting in its queue. A worker killed right after taking it off the
        # queue, before starting it, leaves it "queued" in that worker's intermediate queue,
        # where nobody will ever run it: then it is not alive. (A job is in that state for
        # milliseconds on a live worker, and the reconciler looks only at desktops handed out
        # SETTLE ago; a false alarm would only make the old attempt stale.)
        return conn.lpos(f"rq:queue:{job.origin}", job_id) is not None
    if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return True
    if status == JobStatus.STARTED:
        return bool(job.worker_name) and worker_alive(job.worker_name, conn)
    return False


def task_alive(task: DesktopTask, conn) -> bool:
    """Whether a desktop handed to a worker is still being (or about to be) worked on."""
    host, _, pid = task.runner.rpartition(":")
    if task.status == TaskStatus.RUNNING and host == socket.gethostname() and pid.isdigit():
        # The work horse that runs it may outlive its worker: ask the process itself.
        return pid_alive(int(pid))
    if task.status == TaskStatus.RUNNING and task.rq_job_id:
        # The job that runs it: its own, or the job of a desktop before it that carried on
        # with it (jobs.run_desktop).
        return job_alive(task.rq_job_id, conn)
    # Dispatched: its own job, queued. (A desktop a job kept for itself is not queued: if that
    # job died before starting it, it is not alive, rightly.)
    return job_alive(task.job_id, conn)
