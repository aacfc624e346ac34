"""RQ job entry points. They take row ids, never model instances, and work through the rows:
claim under a lock, call the hypervisor outside any transaction, finish under a lock.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from composer import dispatch, drivers, lifecycle, services, steps
from composer.drivers.base import DriverError, Unreachable
from composer.models import Operation, OperationDesktop
from composer.queue import queue
from pools.models import Desktop

log = logging.getLogger(__name__)

Status = Operation.Status
TaskStatus = OperationDesktop.Status


@drivers.logs_out
def run_operation(operation_id: int) -> str:
    """Start (or, after a crash, resume) an operation: check its plan, prepare replicas,
    then dispatch its desktops to workers."""
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
        elif operation.status != Status.RUNNING or operation.prepared_at is not None:
            # Started already, paused, or ended: nothing to do twice.
            return f"operation {operation_id} is {operation.status}"

    operation = Operation.objects.select_related("pool__endpoint").get(pk=operation_id)
    refusal = lifecycle.prepare(operation)
    if refusal:
        lifecycle.refuse(operation_id, refusal)
        return refusal
    Operation.objects.filter(pk=operation_id).update(prepared_at=timezone.now())
    dispatch.dispatch(operation.pool.endpoint_id)
    # Every desktop may have failed or been skipped already: then nothing was dispatched.
    lifecycle.finish_if_done(operation_id)
    return f"operation {operation_id} started"


@drivers.logs_out
def run_desktop(task_id: int, attempt: int) -> str:
    """Do one desktop's part of an operation, then hand the freed slot to the next desktop."""
    with transaction.atomic():
        task = OperationDesktop.objects.select_for_update().get(pk=task_id)
        if task.status != TaskStatus.DISPATCHED or task.attempts != attempt:
            # A stale delivery: the reconciler handed this desktop out again since.
            return f"desktop task {task_id} attempt {attempt} is stale"
        operation = Operation.objects.select_related("pool").get(pk=task.operation_id)
        if operation.status == Status.PAUSED:
            task.status = TaskStatus.PENDING  # resumed later from where it was
            task.save(update_fields=["status"])
            return f"desktop {task.desktop_name}: paused"
        halted = operation.status != Status.RUNNING  # cancelled while it was queued
        if halted:
            task.status, task.error = TaskStatus.HALTED, f"operation {operation.status}"
            task.finished_at = timezone.now()
            task.save(update_fields=["status", "error", "finished_at"])
            Desktop.objects.filter(pk=task.desktop_id).update(task_halted=True)
        else:
            task.status, task.started_at = TaskStatus.RUNNING, timezone.now()
            task.runner = f"{socket.gethostname()}:{os.getpid()}"
            task.save(update_fields=["status", "started_at", "runner"])

    if not halted:
        _run_steps(task, operation)
    dispatch.dispatch(operation.pool.endpoint_id)
    lifecycle.finish_if_done(operation.pk)
    task.refresh_from_db()
    return f"desktop {task.desktop_name}: {task.status}"


def _run_steps(task: OperationDesktop, operation: Operation) -> None:
    if task.desktop_id is None or not Desktop.objects.filter(pk=task.desktop_id).exists():
        if operation.kind == Operation.Kind.DELETE and task.step == "forget":
            lifecycle.succeed_task(task)  # this task deleted it, then its worker died
        else:  # deleted by another operation while this task waited in the queue
            lifecycle.skip_task(task, "the desktop was deleted before its turn came")
        return
    try:
        steps.run(task, operation)
    except steps.Superseded:
        # The reconciler gave this desktop to another worker; that one carries on.
        log.warning("desktop task %s attempt %s superseded", task.pk, task.attempts)
        return
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
        lifecycle.succeed_task(task)


def outage_backoff(seconds_down: float) -> int:
    """Seconds until the next try while the hypervisor is down: soon at first, then at most
    every 30 s, so a desktop resumes within about half a minute of the hypervisor's return."""
    return int(min(30, max(2, seconds_down / 4)))


def _wait_for_hypervisor(task: OperationDesktop, operation: Operation, exc: Unreachable) -> None:
    """A transport failure is not the desktop's: park it and try the same step again with
    back-off, until the endpoint's outage window has passed; then it fails."""
    now = timezone.now()
    since = (
        OperationDesktop.objects.filter(pk=task.pk).values_list("unreachable_since", flat=True)
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


@drivers.logs_out
def run_endpoint_check(check_id: int) -> str:
    """A connection test or an inventory sync an administrator asked for."""
    from composer import endpoint_checks

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
