"""RQ job entry points. They take row ids, never model instances, and work through the rows:
claim under a lock, call the hypervisor outside any transaction, finish under a lock.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta

import redis
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from composer import (
    dispatch,
    endpoint_checks,
    endpoint_drivers,
    lifecycle,
    log_context,
    preparation,
    services,
    step_timings,
    steps,
    webhooks,
)
from composer.drivers.base import DriverError, Unreachable
from composer.models import DesktopTask, Operation
from composer.queue import URGENT, queue, quick_connection
from pools.models import Desktop

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = DesktopTask.Status


def started_by(operation_id: int) -> str | None:
    """The id of the request that asked for the operation (its first audit event with one),
    for the log lines of its jobs; None when no request did (a schedule, a command)."""
    return (
        AuditEvent.objects.filter(operation_id=operation_id)
        .exclude(request_id="")
        .order_by("pk")
        .values_list("request_id", flat=True)
        .first()
    )


@endpoint_drivers.logs_out
def run_operation(operation_id: int) -> str:
    """Start (or, after a crash, resume) an operation: check its plan, prepare replicas,
    then dispatch its desktops to workers."""
    with log_context.bound(operation_id=operation_id, request_id=started_by(operation_id)):
        return _run_operation(operation_id)


def _run_operation(operation_id: int) -> str:
    with transaction.atomic():
        if Operation.objects.filter(pk=operation_id, status=Status.SCHEDULED).exists():
            # Desktops before the operation, in the order every request takes them.
            services.lock_scheduled_desktops(operation_id)
        operation = Operation.objects.select_for_update().get(pk=operation_id)
        if operation.status == Status.SCHEDULED:
            services.skip_busy(operation)  # desktops another operation took since it was set
        if operation.status in (Status.QUEUED, Status.SCHEDULED):
            operation.status, operation.started_at = Status.RUNNING, timezone.now()
            operation.save(update_fields=["status", "started_at"])
            webhooks.emit(webhooks.STARTED, operation)
            log.info(
                "operation %s started: %s of pool %s, %s desktops, requested by %s",
                operation_id,
                operation.kind,
                operation.pool_name,
                operation.tasks.count(),
                operation.requested_by.get_username(),
            )
        elif operation.status != Status.RUNNING or operation.prepared_at is not None:
            # Started already, paused, or ended: nothing to do twice.
            return f"operation {operation_id} is {operation.status}"

    operation = Operation.objects.select_related("pool__endpoint").get(pk=operation_id)
    refusal = preparation.prepare(operation)
    if refusal:
        lifecycle.refuse(operation_id, refusal)
        return refusal
    Operation.objects.filter(pk=operation_id).update(prepared_at=timezone.now())
    dispatch.dispatch(operation.pool.endpoint_id)
    # Every desktop may have failed or been skipped already: then nothing was dispatched.
    lifecycle.finish_if_done(operation_id)
    return f"operation {operation_id} started"


# A desktop job carries on with the next desktop it dispatches, in the same work horse,
# instead of enqueuing a job for it, for this long (seconds since it started): each job
# costs a fork, a database connection and some 70 Redis calls of rq's bookkeeping, as much
# as a short desktop's own work. A bound, so that other work queued behind (other
# endpoints, scheduled starts) waits at most about this long for a worker, and a job stays
# far from rq's timeout. Tests that step through jobs one by one set it to 0.
CARRY_ON_SECONDS = 10.0


@endpoint_drivers.logs_out
def run_desktop(task_id: int, attempt: int) -> str:
    """Do one desktop's part of an operation, then hand the freed slot to the next desktop:
    to this same job while it may carry on (see CARRY_ON_SECONDS), else to a new job."""
    try:
        return _run_desktops(task_id, attempt)
    finally:
        # The step durations this job noted and has not yet handed over (step_timings.py).
        step_timings.flush(quick_connection())


def _run_desktops(task_id: int, attempt: int) -> str:
    carry_on = _CarryOn()
    runner = f"{socket.gethostname()}:{os.getpid()}"
    task, operation, message = _claim(task_id, attempt, runner, carry_on.job_id)
    done = 0
    requests: dict[int, str | None] = {}  # operation id -> the request that asked for it
    while operation is not None:  # else stale or paused: no slot freed, nothing to dispatch
        if operation.pk not in requests:
            requests[operation.pk] = started_by(operation.pk)
        # This desktop's lines, until the job carries on with the next one.
        with log_context.bound(request_id=requests[operation.pk], **log_context.of_task(task)):
            following = _finish_desktop(task, operation, message, runner, carry_on)
        done += 1
        if following is None:
            break
        task, operation, message = following, following.operation, ""
    if not message:
        task.refresh_from_db(fields=["status"])
        message = f"desktop {task.desktop_name}: {task.status}"
    return message if done <= 1 else f"{done} desktops, the last {message}"


def _finish_desktop(
    task: DesktopTask, operation: Operation, message: str, runner: str, carry_on: _CarryOn
) -> DesktopTask | None:
    """Run a claimed desktop's steps (unless `message` says there is nothing to do), record
    how it ended, and dispatch the slot it frees: returns the next desktop when that goes to
    this job."""
    succeeded = False if message else _run_steps(task, operation)
    # The desktop's success is recorded in the same transaction as the next dispatch.
    record = (lambda task=task: lifecycle.succeed_task(task)) if succeeded else None
    endpoint_id = operation.pool.endpoint_id
    following = None
    if carry_on.allowed():
        following = dispatch.dispatch_and_claim(endpoint_id, runner, carry_on.job_id, before=record)
    else:
        dispatch.dispatch(endpoint_id, before=record)
    if following is None or following.operation_id != operation.pk:
        # (While one of its desktops is handed to this job, it cannot be done.)
        lifecycle.finish_if_done(operation.pk)
    return following


# The urgent queue on the worker's connection (where PortalWorker serves it).
URGENT_QUEUE_KEY = f"rq:queue:{URGENT}"


class _CarryOn:
    """Whether the job running now may take another desktop: for CARRY_ON_SECONDS, while its
    worker lives and has not been asked to stop (a warm shutdown waits for the job), and
    while no urgent job waits for a worker (helpdesk work goes first: composer/queue.py)."""

    def __init__(self):
        from django.conf import settings
        from rq import get_current_job
        from rq.worker import Worker

        seconds = getattr(settings, "DESKTOP_CARRY_ON_SECONDS", CARRY_ON_SECONDS)
        self.until = time.monotonic() + seconds
        self.parent = os.getppid()
        job = get_current_job()
        self.job_id = job.id if job is not None else ""
        self.worker_key = (
            Worker.redis_worker_namespace_prefix + job.worker_name
            if job is not None and job.worker_name
            else None
        )
        self.connection = job.connection if job is not None else None

    def allowed(self) -> bool:
        if not self.job_id or time.monotonic() >= self.until:
            return False  # not in an rq job (called directly), or long enough
        if os.getppid() != self.parent:
            return False  # the worker died (its work horse outlives it): no new work
        try:
            with self.connection.pipeline(transaction=False) as pipe:  # one round trip
                pipe.llen(URGENT_QUEUE_KEY)
                if self.worker_key:
                    pipe.hexists(self.worker_key, "shutdown_requested_date")
                urgent_waiting, *stopping = pipe.execute()
        except redis.exceptions.RedisError:
            return False  # Redis is away: finish this desktop, record it, stop there
        return not urgent_waiting and not any(stopping)


def _claim(
    task_id: int, attempt: int, runner: str, job_id: str
) -> tuple[DesktopTask | None, Operation | None, str]:
    """Take the desktop the job was enqueued for. Returns the task, its operation (None when
    the desktop is not to be run: a stale delivery, or its operation paused) and a message
    when there is nothing more to do to it (paused, halted)."""
    with transaction.atomic():
        task = DesktopTask.objects.select_for_update().get(pk=task_id)
        if task.status != TaskStatus.DISPATCHED or task.attempts != attempt:
            # A stale delivery: the reconciler handed this desktop out again since.
            return None, None, f"desktop task {task_id} attempt {attempt} is stale"
        operation = Operation.objects.select_related("pool").get(pk=task.operation_id)
        if operation.status == Status.PAUSED:
            task.status = TaskStatus.PENDING  # resumed later from where it was
            task.save(update_fields=["status"])
            return task, None, f"desktop {task.desktop_name}: paused"
        if operation.status != Status.RUNNING:  # cancelled while it was queued
            task.status, task.error = TaskStatus.HALTED, f"operation {operation.status}"
            task.finished_at = timezone.now()
            task.save(update_fields=["status", "error", "finished_at"])
            Desktop.objects.filter(pk=task.desktop_id).update(task_halted=True)
            log.info(
                "desktop %s halted: operation %s",
                task.desktop_name,
                operation.status,
                extra=log_context.of_task(task),
            )
            return task, operation, f"desktop {task.desktop_name}: halted"
        task.status, task.started_at = TaskStatus.RUNNING, timezone.now()
        task.runner, task.rq_job_id = runner, job_id
        task.save(update_fields=["status", "started_at", "runner", "rq_job_id"])
    return task, operation, ""


def _run_steps(task: DesktopTask, operation: Operation) -> bool:
    """Run the desktop's steps and record how they ended, except a success: then True, for
    the caller to record."""
    if task.desktop_id is None or not Desktop.objects.filter(pk=task.desktop_id).exists():
        if operation.spec.done_without_desktop(task):
            lifecycle.succeed_task(task)  # this task deleted it, then its worker died
        else:  # deleted by another operation while this task waited in the queue
            lifecycle.skip_task(task, "the desktop was deleted before its turn came")
        return False
    try:
        steps.run(task, operation)
    except steps.Superseded:
        # The reconciler gave this desktop to another worker; that one carries on.
        log.warning("desktop task %s attempt %s superseded", task.pk, task.attempts)
        return False
    except steps.Wait as wait:
        lifecycle.park_task(task, steps.wait_until(wait.seconds), str(wait))
        schedule_dispatch(operation.pool.endpoint_id, wait.seconds)
    except Unreachable as exc:
        _wait_for_hypervisor(task, operation, exc)
    except DriverError as exc:
        lifecycle.fail_task(task, f"{task.step}: {exc}")
        if operation.stop_on_error:
            lifecycle.halt_pending(operation, f"stopped: {task.desktop_name} failed")
    except (OperationalError, InterfaceError):
        # The database went away (or dropped the connection): not the desktop's fault. The
        # job fails; once the database is back the reconciler hands the desktop out again
        # from the step it recorded, instead of it ending in Error if the database
        # happened to answer again just in time to record a failure.
        raise
    except Exception as exc:
        # A bug must not leave the desktop busy: record it on the desktop, and log it.
        log.exception("desktop task %s failed", task.pk)
        lifecycle.fail_task(task, f"{task.step}: internal error: {type(exc).__name__}: {exc}")
        if operation.stop_on_error:
            lifecycle.halt_pending(operation, f"stopped: {task.desktop_name} failed")
    else:
        return True  # the caller records the success, with its next dispatch
    return False


def outage_backoff(seconds_down: float) -> int:
    """Seconds until the next try while the hypervisor is down: soon at first, then at most
    every 30 s, so a desktop resumes within about half a minute of the hypervisor's return."""
    return int(min(30, max(2, seconds_down / 4)))


def _wait_for_hypervisor(task: DesktopTask, operation: Operation, exc: Unreachable) -> None:
    """A transport failure is not the desktop's: park it and try the same step again with
    back-off, until the endpoint's outage window has passed; then it fails."""
    now = timezone.now()
    since = (
        DesktopTask.objects.filter(pk=task.pk).values_list("unreachable_since", flat=True)
    ).first() or now
    window = operation.pool.endpoint.outage_window_seconds
    down = (now - since).total_seconds()
    if down >= window:
        lifecycle.fail_task(
            task, f"{task.step}: {exc} (no answer for {int(down)} s, more than {window} s)"
        )
        if operation.stop_on_error:
            lifecycle.halt_pending(operation, f"stopped: {task.desktop_name} failed")
        return
    delay = outage_backoff(down)
    log.warning("desktop %s: %s; trying again in %s s", task.desktop_name, exc, delay)
    lifecycle.park_task(
        task,
        now + timedelta(seconds=delay),
        f"hypervisor not answering since {since:%H:%M:%S} ({exc}); trying again",
        unreachable_since=since,
    )
    schedule_dispatch(operation.pool.endpoint_id, delay)


@endpoint_drivers.logs_out
def run_endpoint_check(check_id: int) -> str:
    """A connection test or an inventory sync an administrator asked for."""
    return endpoint_checks.run(check_id)


def dispatch_endpoint(endpoint_id: int) -> int:
    """Scheduled job: look again at desktops waiting for a logoff."""
    return dispatch.dispatch(endpoint_id)


def schedule_dispatch(endpoint_id: int, seconds: int) -> None:
    # rq's scheduler (workers run with --with-scheduler) enqueues it when due; one job per
    # endpoint and moment, and the reconciler dispatches every minute anyway.
    when = timezone.now() + timedelta(seconds=seconds + 1)  # just after retry_at, not before
    job_id = f"dispatch-endpoint-{endpoint_id}-{int(when.timestamp()) // 5}"
    queue().enqueue_at(when, dispatch_endpoint, endpoint_id, job_id=job_id, result_ttl=60)
