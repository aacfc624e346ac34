"""Asking for an operation: one path for every kind.

request_operation() chooses the desktops, checks the actor may run the kind on them that
way, then either queues (or schedules) the operation, or, for a planned kind (recompose,
rebalance), works out its plan and keeps it for approval. The kind (composer/kinds/) says
which; nothing here names a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.log import record
from composer import kinds
from composer.models import DesktopTask, Operation
from composer.services.authorization import MAINTENANCE, authorize
from composer.services.errors import OperationRefused
from composer.services.holds import busy, lock_desktops, skip_busy
from composer.services.schedule import activate, option_parameters
from pools.models import Desktop, PersistentDisk, Pool

Status = Operation.Status
TaskStatus = DesktopTask.Status


@dataclass(frozen=True)
class Options:
    """What every maintenance operation takes (DESIGN.md, "Options")."""

    start_at: datetime | None = None  # None: now
    logoff_policy: str = Operation.LogoffPolicy.WAIT
    warning_message: str = ""
    grace_seconds: int = 300
    stop_on_error: bool = False


def required_permission(
    kind: str,
    desktops: list[Desktop],
    whole_pool: bool,
    options: Options | None = None,
    extra: dict | None = None,
) -> str:
    """The permission an operation needs. Helpdesk's own permissions cover one desktop, now,
    of a kind that names one (a refresh, a restart or a log off). Anything else (a schedule,
    a shutdown or start, more desktops) is maintenance. Without options (a form not yet
    filled in) it answers for the helpdesk's kind of request."""
    if helpdesk_sized(kind, desktops, whole_pool, options, extra):
        return kinds.get(kind).helpdesk_permission
    return MAINTENANCE


def helpdesk_sized(
    kind: str,
    desktops: list[Desktop],
    whole_pool: bool,
    options: Options | None = None,
    extra: dict | None = None,
) -> bool:
    """What helpdesk may do, and what runs urgently (Operation.urgent), ahead of bulk work,
    whoever asks for it: the kind decides (OperationKind.helpdesk_sized)."""
    now = options is None or options.start_at is None
    return kinds.get(kind).helpdesk_sized(desktops, whole_pool, now, extra)


def _authorize(actor, kind, pool, desktops, whole_pool, request, options=None, extra=None):
    permission = required_permission(kind, desktops, whole_pool, options, extra)
    what = "this desktop" if len(desktops) == 1 else "these desktops"
    # A helpdesk user may refresh one desktop but nothing wider.
    authorize(
        actor,
        permission,
        MAINTENANCE,
        action=kind,
        target=desktops[0] if len(desktops) == 1 else pool,
        parameters={"desktops": [d.name for d in desktops[:50]], "whole_pool": whole_pool},
        request=request,
        message=f"Your role does not allow {kind} on {what}.",
    )


def _asked(actor, pool, kind, desktops, options, extra, request):
    """What every request starts with, run or previewed: the kind, the desktops chosen, the
    permission for them (a denial recorded), and the kind's options for them."""
    spec = kinds.get(kind)
    whole_pool = desktops is None
    chosen = _desktops(pool, desktops)
    _authorize(actor, kind, pool, chosen, whole_pool, request, options, extra)
    extra = spec.whole_pool(extra or {}) if whole_pool else (extra or {})
    if not chosen and not (whole_pool and spec.acts_without_desktops(extra)):
        raise OperationRefused("No desktops selected.")
    return spec, chosen, whole_pool, extra


def request_operation(
    actor,
    pool: Pool,
    kind: str,
    desktops: list[Desktop] | None = None,
    options: Options = Options(),
    extra: dict | None = None,
    request=None,
    submission: str = "",
) -> Operation:
    """Ask for an operation of `kind` on desktops of a pool (None: the whole pool).

    A planned kind comes back as a draft holding its plan, for approve() or discard(); any
    other is queued or scheduled. `submission` is the form's one-time token: the same form
    sent twice (a double click) returns the operation the first one started.
    Raises PermissionDenied (after recording the denial), OperationRefused, or
    kinds.UnknownKind.
    """
    spec, chosen, whole_pool, extra = _asked(actor, pool, kind, desktops, options, extra, request)
    if spec.planned:
        return _plan(actor, pool, spec, chosen, options, extra, request)
    try:
        with transaction.atomic():
            lock_desktops(d.pk for d in chosen)
            earlier = _submitted(submission)
            if earlier is not None:
                return earlier
            operation = _new_operation(actor, pool, kind, options, extra, submission)
            operation.urgent = spec.helpdesk_sized(
                chosen, whole_pool, options.start_at is None, extra
            )
            _add_tasks(operation, chosen)
            activate(operation, actor, request)
    except IntegrityError:
        # The same token committed by a request that took no desktop lock we waited for.
        earlier = _submitted(submission)
        if earlier is None:
            raise
        return earlier
    return operation


def _plan(actor, pool, spec, chosen, options, extra, request) -> Operation:
    """Work out the plan and keep it, awaiting approval: nothing runs yet."""
    with transaction.atomic():
        operation = _new_operation(actor, pool, spec.name, options, extra)
        plan = spec.plan(pool, chosen, extra, busy(chosen))
        operation.plan = plan.as_json()
        operation.save(update_fields=["plan"])
        plan.create_tasks(operation)
        record(
            actor=actor,
            action=spec.name,
            outcome="planned",
            target=pool,
            operation=operation,
            parameters={"desktops": len(chosen), **option_parameters(operation)},
            request=request,
        )
    return operation


@dataclass(frozen=True)
class Preview:
    """What a request would do, kept nowhere (PowerCLI's -WhatIf): the desktops it would act
    on, those another live operation holds (desktop id -> its operation id), and for a
    planned kind the plan it would be approved with."""

    kind: str
    desktops: list[Desktop]
    busy: dict[int, int]
    plan: dict | None


def preview_operation(
    actor,
    pool: Pool,
    kind: str,
    desktops: list[Desktop] | None = None,
    options: Options = Options(),
    extra: dict | None = None,
    request=None,
) -> Preview:
    """request_operation() without its effects: the same permission check (a denial is
    recorded), the same choice of desktops and, for a planned kind, the same plan, but no
    operation, no task and no audit event of work asked for."""
    spec, chosen, _, extra = _asked(actor, pool, kind, desktops, options, extra, request)
    held = busy(chosen)
    plan = spec.plan(pool, chosen, extra, held).as_json() if spec.planned else None
    return Preview(kind=kind, desktops=chosen, busy=held, plan=plan)


def start_operation(actor, pool, kind, desktops=None, options=Options(), extra=None, **kw):
    """request_operation() for a kind that runs without a plan."""
    if kinds.get(kind).planned:
        raise ValueError(f"{kind} needs a plan: use plan_operation()")
    return request_operation(actor, pool, kind, desktops, options, extra, **kw)


def plan_operation(actor, pool, kind, desktops=None, options=Options(), extra=None, **kw):
    """request_operation() for a planned kind: the draft with its plan."""
    if not kinds.get(kind).planned:
        raise ValueError(f"{kind} runs without a plan: use start_operation()")
    return request_operation(actor, pool, kind, desktops, options, extra, **kw)


def approve(actor, operation: Operation, request=None) -> Operation:
    """Run the plan the administrator saw, exactly as it was frozen."""
    desktops = [t.desktop for t in operation.tasks.select_related("desktop") if t.desktop]
    _authorize(actor, operation.kind, operation.pool, desktops, False, request)
    with transaction.atomic():
        lock_desktops(d.pk for d in desktops)
        operation = Operation.objects.select_for_update().get(pk=operation.pk)
        if operation.status != Status.DRAFT:
            raise OperationRefused(f"This plan is {operation.get_status_display().lower()}.")
        if operation.scheduled_for and operation.scheduled_for <= timezone.now():
            operation.scheduled_for = None  # its time passed while it was reviewed: run now
        skip_busy(operation)
        activate(operation, actor, request)
    return operation


def attach_disk(actor, disk: PersistentDisk, desktop: Desktop, request=None) -> Operation:
    """Attach a kept persistent disk to a desktop (for example a user's disk to their new
    desktop after the old one was deleted)."""
    if disk.desktop_id is not None:
        raise OperationRefused(f"{disk.name} is attached to {disk.desktop}; detach it first.")
    return request_operation(
        actor,
        desktop.pool,
        "attach_disk",
        [desktop],
        extra={"disk": disk.pk, "disk_name": disk.name},
        request=request,
    )


def _submitted(submission: str) -> Operation | None:
    if not submission:
        return None
    return Operation.objects.filter(submission=submission).first()


def _desktops(pool: Pool, desktops: list[Desktop] | None) -> list[Desktop]:
    if desktops is None:
        return list(pool.desktops.select_related("datastore", "image_version").order_by("name"))
    foreign = [d.name for d in desktops if d.pool_id != pool.pk]
    if foreign:
        raise OperationRefused(f"Not in pool {pool.name}: {', '.join(foreign)}.")
    return sorted(desktops, key=lambda d: d.name)


def _new_operation(
    actor, pool, kind, options: Options, extra: dict, submission: str = ""
) -> Operation:
    # A draft until activate() queues or schedules it (or, planned, until it is approved).
    return Operation.objects.create(
        submission=submission or None,
        kind=kind,
        pool=pool,
        pool_name=pool.name,
        status=Status.DRAFT,
        requested_by=actor,
        options=extra,
        scheduled_for=options.start_at,
        logoff_policy=options.logoff_policy,
        warning_message=options.warning_message,
        grace_seconds=options.grace_seconds,
        stop_on_error=options.stop_on_error,
    )


def _add_tasks(operation: Operation, desktops: list[Desktop]) -> None:
    held = busy(desktops)
    DesktopTask.objects.bulk_create(
        DesktopTask(
            operation=operation,
            desktop=d,
            desktop_name=d.name,
            status=TaskStatus.SKIPPED if d.pk in held else TaskStatus.PENDING,
            error=f"busy in operation #{held[d.pk]}" if d.pk in held else "",
        )
        for d in desktops
    )
