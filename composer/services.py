"""Starting operations. Views call these; they check permission again, so no path around a
view can skip it, and they write the audit event in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from composer import capacity, naming
from composer.models import DesktopTask, Operation
from composer.queue import enqueue_at_on_commit, enqueue_on_commit
from pools.models import (
    Datastore,
    Desktop,
    ImageVersion,
    PersistentDisk,
    Pool,
    PoolDatastore,
    Replica,
)
from portal.audit import Outcome, record


@dataclass(frozen=True)
class PoolSpec:
    name: str
    naming_pattern: str
    size: int
    datastores: list[Datastore]
    image_version: ImageVersion
    overcommit: int
    power_policy: str = Pool.PowerPolicy.ALWAYS_ON
    persistent_disk_mb: int = 0
    max_concurrent_provisioning: int = 8
    domain: str = ""


def datastore_rooms(
    datastores: list[Datastore], version: ImageVersion, overcommit: int
) -> list[capacity.DatastoreRoom]:
    """What each datastore can still take, counting work already promised to pending desktops."""
    ids = [ds.pk for ds in datastores]
    committed = Desktop.objects.committed_mb_by_datastore(ids)
    # Desktops not yet cloned do not show in the hypervisor's free space: reserve for them.
    pending = dict(
        Desktop.objects.filter(datastore_id__in=ids, delta_mb=0)
        .values_list("datastore_id")
        .annotate(n=Count("*"))
    )
    replicas = set(
        Replica.objects.filter(datastore_id__in=ids, image_version=version)
        .exclude(status=Replica.Status.FAILED)
        .values_list("datastore_id", flat=True)
    )
    creating = dict(
        Replica.objects.filter(datastore_id__in=ids, status=Replica.Status.CREATING)
        .values_list("datastore_id")
        .annotate(total=Sum("image_version__used_mb"))
    )
    return [
        capacity.DatastoreRoom(
            name=ds.name,
            capacity_mb=ds.capacity_mb,
            free_mb=ds.free_mb
            - pending.get(ds.pk, 0) * capacity.NEW_CLONE_DELTA_MB
            - (creating.get(ds.pk) or 0),
            overcommit=overcommit,
            committed_mb=committed.get(ds.pk, 0),
            has_replica=ds.pk in replicas,
        )
        for ds in datastores
    ]


def plan_placement(spec: PoolSpec, taken_names: set[str] | None = None) -> list[tuple[str, str]]:
    """(desktop name, datastore name) for each new desktop; raises DoesNotFit or NamingError."""
    version = spec.image_version
    clone = capacity.Clone(
        disk_mb=version.disk_mb, replica_mb=version.used_mb, extra_mb=spec.persistent_disk_mb
    )
    rooms = datastore_rooms(spec.datastores, version, spec.overcommit)
    placement = capacity.place(spec.size, rooms, clone)
    if taken_names is None:
        taken_names = _names_like(spec.naming_pattern)
    names = naming.names(spec.naming_pattern, spec.size, taken_names)
    return list(zip(names, placement, strict=True))


def _names_like(pattern: str) -> set[str]:
    parsed = naming.parse(pattern)
    query = Q(name__istartswith=parsed.prefix) if parsed.prefix else Q()
    return set(Desktop.objects.filter(query).values_list("name", flat=True))


def create_pool(actor, spec: PoolSpec, request=None) -> Operation:
    """Create a pool and its desktops, and queue their provisioning.

    Raises PermissionDenied (after recording the denial), DoesNotFit or NamingError.
    """
    if not actor.has_perm("pools.add_pool"):
        with transaction.atomic():
            record(
                actor=actor,
                action="create_pool",
                outcome=Outcome.DENIED,
                parameters={"name": spec.name},
                request=request,
            )
        raise PermissionDenied("Only administrators may create pools.")

    with transaction.atomic():
        # Lock the datastores so two pools created at once cannot both take the last room.
        list(Datastore.objects.select_for_update().filter(pk__in=[d.pk for d in spec.datastores]))
        placement = plan_placement(spec)
        by_name = {ds.name: ds for ds in spec.datastores}
        endpoint = spec.image_version.image.endpoint
        pool = Pool.objects.create(
            name=spec.name,
            endpoint=endpoint,
            naming_pattern=spec.naming_pattern,
            size=spec.size,
            image_version=spec.image_version,
            power_policy=spec.power_policy,
            persistent_disk_mb=spec.persistent_disk_mb,
            max_concurrent_provisioning=spec.max_concurrent_provisioning,
            domain=spec.domain,
        )
        PoolDatastore.objects.bulk_create(
            PoolDatastore(pool=pool, datastore=ds, overcommit=spec.overcommit)
            for ds in spec.datastores
        )
        desktops = Desktop.objects.bulk_create(
            Desktop(
                pool=pool,
                name=name,
                datastore=by_name[ds_name],
                image_version=spec.image_version,
            )
            for name, ds_name in placement
        )
        operation = Operation.objects.create(
            kind=Operation.Kind.PROVISION,
            pool=pool,
            pool_name=pool.name,
            requested_by=actor,
            options={"desktops": len(desktops)},
        )
        DesktopTask.objects.bulk_create(
            DesktopTask(operation=operation, desktop=d, desktop_name=d.name) for d in desktops
        )
        record(
            actor=actor,
            action="create_pool",
            outcome=Outcome.REQUESTED,
            target=pool,
            operation=operation,
            parameters={
                "size": spec.size,
                "naming_pattern": spec.naming_pattern,
                "datastores": [ds.name for ds in spec.datastores],
                "image_version": str(spec.image_version),
                "overcommit": spec.overcommit,
            },
            request=request,
        )
        from composer.jobs import run_operation

        enqueue_on_commit(run_operation, operation.job_id, operation.pk)
    return operation


def set_pool_datastores(actor, pool: Pool, changes, request=None) -> None:
    """Select or deselect datastores for a pool and set their over-commit level.

    `changes` is a list of (datastore, selected, overcommit). Deselecting keeps the row
    (selected=False) so the next rebalance vacates the datastore.
    """
    from pools.models import Overcommit

    if not actor.has_perm("pools.change_pool"):
        with transaction.atomic():
            record(
                actor=actor,
                action="pool_datastores",
                outcome=Outcome.DENIED,
                target=pool,
                request=request,
            )
        raise PermissionDenied("Only administrators may change a pool's datastores.")
    foreign = [ds.name for ds, _, _ in changes if ds.endpoint_id != pool.endpoint_id]
    if foreign:
        raise OperationRefused(f"Not on the pool's hypervisor: {', '.join(foreign)}.")
    with transaction.atomic():
        # One editor at a time per pool: the rows are read and written under its lock.
        Pool.objects.select_for_update().get(pk=pool.pk)
        for ds, selected, overcommit in changes:
            PoolDatastore.objects.update_or_create(
                pool=pool, datastore=ds, defaults={"selected": selected, "overcommit": overcommit}
            )
        record(
            actor=actor,
            action="pool_datastores",
            outcome=Outcome.SUCCEEDED,
            target=pool,
            parameters={
                "changed": {
                    ds.name: {"selected": selected, "overcommit": Overcommit(overcommit).label}
                    for ds, selected, overcommit in changes
                }
            },
            request=request,
        )


# -- maintenance operations -----------------------------------------------------------------

Kind = Operation.Kind
Status = Operation.Status
TaskStatus = DesktopTask.Status

# Kinds that need a plan approved before they run.
PLANNED_KINDS = (Kind.RECOMPOSE, Kind.REBALANCE)
# Helpdesk may act on one desktop at a time with these; everything else is administrators'.
SINGLE_DESKTOP_PERMISSION = {
    Kind.REFRESH: "pools.refresh_desktop",
    Kind.POWER: "pools.power_desktop",
    Kind.LOGOFF: "pools.logoff_desktop",
}


class OperationRefused(Exception):
    """The request cannot be carried out as asked; the message says why, for the user."""


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
    """The permission an operation needs. Helpdesk's own permissions cover one desktop, now:
    a refresh, a restart or a log off. Anything else (a schedule, a shutdown or start, more
    desktops) is maintenance. Without options (a form not yet filled in) it answers for the
    helpdesk's kind of request."""
    if helpdesk_sized(kind, desktops, whole_pool, options, extra):
        return SINGLE_DESKTOP_PERMISSION[kind]
    return "pools.run_maintenance"


def helpdesk_sized(
    kind: str,
    desktops: list[Desktop],
    whole_pool: bool,
    options: Options | None = None,
    extra: dict | None = None,
) -> bool:
    """One desktop, now, a refresh, a restart or a log off: what helpdesk may do, and what
    runs urgently (Operation.urgent), ahead of bulk work, whoever asks for it."""
    single = len(desktops) == 1 and not whole_pool
    now = options is None or options.start_at is None
    restart = kind != Kind.POWER or (extra or {}).get("action", "restart") == "restart"
    return kind in SINGLE_DESKTOP_PERMISSION and single and now and restart


def _check_permission(
    actor, kind, pool, desktops, whole_pool, request, options=None, extra=None
) -> None:
    permission = required_permission(kind, desktops, whole_pool, options, extra)
    # A helpdesk user may refresh one desktop but nothing wider.
    if actor.has_perm(permission) or actor.has_perm("pools.run_maintenance"):
        return
    with transaction.atomic():
        record(
            actor=actor,
            action=kind,
            outcome=Outcome.DENIED,
            target=desktops[0] if len(desktops) == 1 else pool,
            parameters={"desktops": [d.name for d in desktops[:50]], "whole_pool": whole_pool},
            request=request,
        )
    what = "this desktop" if len(desktops) == 1 else "these desktops"
    raise PermissionDenied(f"Your role does not allow {kind} on {what}.")


def start_operation(
    actor,
    pool: Pool,
    kind: str,
    desktops: list[Desktop] | None = None,
    options: Options = Options(),
    extra: dict | None = None,
    request=None,
    submission: str = "",
) -> Operation:
    """Queue (or schedule) refresh, delete, power or log off on desktops of a pool.

    `desktops` None means the whole pool. Recompose and rebalance go through
    plan_operation() and approve() instead, so an administrator sees the plan first.
    `submission` is the form's one-time token: the same form sent twice (a double click)
    returns the operation the first one started.
    """
    if kind in PLANNED_KINDS:
        raise ValueError(f"{kind} needs a plan: use plan_operation()")
    chosen, whole_pool = _selection(actor, pool, kind, desktops, request, options, extra)
    if kind == Kind.DELETE and whole_pool:
        extra = {**(extra or {}), "delete_pool": True}
    if not chosen and not (kind == Kind.DELETE and whole_pool):
        raise OperationRefused("No desktops selected.")
    try:
        with transaction.atomic():
            lock_desktops(d.pk for d in chosen)
            earlier = _submitted(submission)
            if earlier is not None:
                return earlier
            operation = _new_operation(
                actor, pool, kind, options, extra or {}, Status.DRAFT, submission
            )
            operation.urgent = helpdesk_sized(kind, chosen, whole_pool, options, extra)
            _add_tasks(operation, chosen)
            _activate(operation, actor, request)
    except IntegrityError:
        # The same token committed by a request that took no desktop lock we waited for.
        earlier = _submitted(submission)
        if earlier is None:
            raise
        return earlier
    return operation


def lock_desktops(desktop_ids) -> None:
    """Hold these desktops' rows, taken in id order (so two holders never deadlock), until
    the transaction ends. Whoever gives desktops to a live operation holds them while it
    checks that no other live operation has them and adds its tasks, so two requests at the
    same moment cannot both find a desktop free. (SQLite's IMMEDIATE transactions already
    run one writer at a time.)"""
    ids = sorted(set(desktop_ids))
    if ids:
        list(
            Desktop.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _submitted(submission: str) -> Operation | None:
    if not submission:
        return None
    return Operation.objects.filter(submission=submission).first()


def plan_operation(
    actor,
    pool: Pool,
    kind: str,
    desktops: list[Desktop] | None = None,
    options: Options = Options(),
    extra: dict | None = None,
    request=None,
) -> Operation:
    """Work out the plan of a recompose or rebalance and keep it, awaiting approval."""
    from composer import plans

    if kind not in PLANNED_KINDS:
        raise ValueError(f"{kind} runs without a plan: use start_operation()")
    chosen, whole_pool = _selection(actor, pool, kind, desktops, request)
    if not chosen:
        raise OperationRefused("No desktops selected.")
    extra = extra or {}
    with transaction.atomic():
        operation = _new_operation(actor, pool, kind, options, extra, Status.DRAFT)
        if kind == Kind.REBALANCE:
            plan = plans.plan_rebalance(pool, chosen, busy=_busy(chosen))
        else:
            plan = plans.plan_recompose(pool, chosen, extra["image_version"], busy=_busy(chosen))
        operation.plan = plan.as_json()
        operation.save(update_fields=["plan"])
        plan.create_tasks(operation)
        record(
            actor=actor,
            action=kind,
            outcome="planned",
            target=pool,
            operation=operation,
            parameters={"desktops": len(chosen), **_option_parameters(operation)},
            request=request,
        )
    return operation


def approve(actor, operation: Operation, request=None) -> Operation:
    """Run the plan the administrator saw, exactly as it was frozen."""
    desktops = [t.desktop for t in operation.tasks.select_related("desktop") if t.desktop]
    _check_permission(actor, operation.kind, operation.pool, desktops, False, request)
    with transaction.atomic():
        lock_desktops(d.pk for d in desktops)
        operation = Operation.objects.select_for_update().get(pk=operation.pk)
        if operation.status != Status.DRAFT:
            raise OperationRefused(f"This plan is {operation.get_status_display().lower()}.")
        if operation.scheduled_for and operation.scheduled_for <= timezone.now():
            operation.scheduled_for = None  # its time passed while it was reviewed: run now
        skip_busy(operation)
        _activate(operation, actor, request)
    return operation


def discard(actor, operation: Operation, request=None) -> None:
    with transaction.atomic():
        operation = _control(actor, operation, "discard", request)
        if operation.status != Status.DRAFT:
            raise OperationRefused("Only a plan awaiting approval can be discarded.")
        operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
        operation.save(update_fields=["status", "finished_at"])
        operation.tasks.update(status=TaskStatus.SKIPPED, error="plan discarded")
        record(
            actor=actor,
            action=operation.kind,
            outcome="cancelled",
            target=operation.audit_target(),
            operation=operation,
            message="plan discarded",
            request=request,
        )


def _selection(
    actor, pool, kind, desktops, request, options=None, extra=None
) -> tuple[list[Desktop], bool]:
    """The desktops an operation would act on (None: the whole pool), once the actor is
    known to be allowed to act on them that way."""
    whole_pool = desktops is None
    chosen = _desktops(pool, desktops)
    _check_permission(actor, kind, pool, chosen, whole_pool, request, options, extra)
    return chosen, whole_pool


def _desktops(pool: Pool, desktops: list[Desktop] | None) -> list[Desktop]:
    if desktops is None:
        return list(pool.desktops.select_related("datastore", "image_version").order_by("name"))
    foreign = [d.name for d in desktops if d.pool_id != pool.pk]
    if foreign:
        raise OperationRefused(f"Not in pool {pool.name}: {', '.join(foreign)}.")
    return sorted(desktops, key=lambda d: d.name)


def _new_operation(
    actor, pool, kind, options: Options, extra: dict, status, submission: str = ""
) -> Operation:
    return Operation.objects.create(
        submission=submission or None,
        kind=kind,
        pool=pool,
        pool_name=pool.name,
        status=status,
        requested_by=actor,
        options=extra,
        scheduled_for=options.start_at,
        logoff_policy=options.logoff_policy,
        warning_message=options.warning_message,
        grace_seconds=options.grace_seconds,
        stop_on_error=options.stop_on_error,
    )


def _busy(desktops: list[Desktop]) -> dict[int, int]:
    """Desktop id -> the started operation already working on it (DesktopTask.objects.busy:
    a scheduled one is replaced, not skipped)."""
    return dict(
        DesktopTask.objects.busy()
        .filter(desktop_id__in=[d.pk for d in desktops])
        .values_list("desktop_id", "operation_id")
    )


def _add_tasks(operation: Operation, desktops: list[Desktop]) -> None:
    busy = _busy(desktops)
    DesktopTask.objects.bulk_create(
        DesktopTask(
            operation=operation,
            desktop=d,
            desktop_name=d.name,
            status=TaskStatus.SKIPPED if d.pk in busy else TaskStatus.PENDING,
            error=f"busy in operation #{busy[d.pk]}" if d.pk in busy else "",
        )
        for d in desktops
    )


def lock_scheduled_desktops(operation_id: int) -> None:
    """A scheduled operation about to start holds its desktops first (jobs.run_operation),
    then skip_busy() skips those another live operation took in the meantime."""
    lock_desktops(
        DesktopTask.objects.filter(
            operation_id=operation_id, status=TaskStatus.PENDING
        ).values_list("desktop_id", flat=True)
    )


def skip_busy(operation: Operation) -> None:
    tasks = operation.tasks.filter(status=TaskStatus.PENDING).select_related("desktop")
    busy = _busy([t.desktop for t in tasks if t.desktop])
    for task in tasks:
        if task.desktop_id in busy:
            task.status, task.error = (
                TaskStatus.SKIPPED,
                f"busy in operation #{busy[task.desktop_id]}",
            )
            task.save(update_fields=["status", "error"])


def _activate(operation: Operation, actor, request) -> None:
    """Queue it now or schedule it, keeping one pending schedule per desktop."""
    from composer.jobs import run_operation

    desktop_ids = list(
        operation.tasks.filter(status=TaskStatus.PENDING).values_list("desktop_id", flat=True)
    )
    scheduled = DesktopTask.objects.filter(
        desktop_id__in=desktop_ids, operation__status=Status.SCHEDULED, status=TaskStatus.PENDING
    ).exclude(operation=operation)
    cancelled: list[Operation] = []
    if operation.scheduled_for:
        clash = list(scheduled.values_list("desktop_name", "operation_id")[:10])
        if clash:
            names = ", ".join(f"{name} (operation #{op})" for name, op in clash)
            raise OperationRefused(
                f"Already scheduled: {names}. A desktop has one pending schedule; start now to "
                "replace it, or cancel that schedule first."
            )
        operation.status = Status.SCHEDULED
    else:
        replaced_ops = set(scheduled.values_list("operation_id", flat=True))
        scheduled.update(
            status=TaskStatus.HALTED,
            error=f"schedule replaced by operation #{operation.pk}",
            finished_at=timezone.now(),
        )
        for op_id in replaced_ops:
            emptied = _cancel_if_empty(op_id)
            if emptied is not None:
                cancelled.append(emptied)
        operation.status = Status.QUEUED
    operation.save(update_fields=["status", "scheduled_for", "urgent"])
    # Audit events last, after every row lock (record() takes the audit log's own lock).
    for replaced in cancelled:
        record(
            actor=actor,
            action=replaced.kind,
            outcome="cancelled",
            target=replaced.audit_target(),
            operation=replaced,
            message=replaced.error,
            request=request,
        )
    record(
        actor=actor,
        action=operation.kind,
        outcome=Outcome.REQUESTED,
        target=operation.audit_target(),
        operation=operation,
        parameters={
            "desktops": len(desktop_ids),
            "desktop_names": _names(operation),
            **_option_parameters(operation),
        },
        request=request,
    )
    if operation.scheduled_for:
        enqueue_at_on_commit(operation.scheduled_for, run_operation, operation.job_id, operation.pk)
    else:
        enqueue_on_commit(
            run_operation, operation.job_id, operation.pk, queue_name=operation.queue_name
        )


def _cancel_if_empty(operation_id: int) -> Operation | None:
    """Cancel a scheduled operation left with no desktop; returns it, to be audited."""
    operation = Operation.objects.select_for_update().get(pk=operation_id)
    if operation.tasks.filter(status=TaskStatus.PENDING).exists():
        return None
    operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
    operation.error = "every desktop's schedule was replaced by a later request"
    operation.save(update_fields=["status", "finished_at", "error"])
    return operation


def _option_parameters(operation: Operation) -> dict:
    return {
        "start_at": operation.scheduled_for.isoformat() if operation.scheduled_for else "now",
        "logoff_policy": operation.logoff_policy,
        "grace_seconds": operation.grace_seconds,
        "stop_on_error": operation.stop_on_error,
        # What the logged-on users were told (helpdesk's message, or the engine's warning).
        "warning_message": operation.warning_message,
        **{k: v for k, v in operation.options.items()},
    }


# Desktop names an audit event lists; the count is there in full.
NAMES_AUDITED = 50


def _names(operation: Operation) -> list[str]:
    return list(
        operation.tasks.filter(status=TaskStatus.PENDING)
        .order_by("desktop_name")
        .values_list("desktop_name", flat=True)[:NAMES_AUDITED]
    )


def attach_disk(actor, disk: PersistentDisk, desktop: Desktop, request=None) -> Operation:
    """Attach a kept persistent disk to a desktop (for example a user's disk to their new
    desktop after the old one was deleted)."""
    if disk.desktop_id is not None:
        raise OperationRefused(f"{disk.name} is attached to {disk.desktop}; detach it first.")
    return start_operation(
        actor,
        desktop.pool,
        Kind.ATTACH_DISK,
        [desktop],
        extra={"disk": disk.pk, "disk_name": disk.name},
        request=request,
    )


# -- controlling a running operation --------------------------------------------------------


def _control(actor, operation: Operation, action: str, request) -> Operation:
    if not actor.has_perm("pools.run_maintenance") and not actor.has_perm(
        SINGLE_DESKTOP_PERMISSION.get(operation.kind, "pools.run_maintenance")
    ):
        with transaction.atomic():
            record(
                actor=actor,
                action=f"{action}_operation",
                outcome=Outcome.DENIED,
                target=operation.audit_target(),
                operation=operation,
                request=request,
            )
        raise PermissionDenied(f"Your role does not allow you to {action} operations.")
    return Operation.objects.select_for_update().get(pk=operation.pk)


def cancel(actor, operation: Operation, request=None) -> Operation:
    """Desktops not reached yet stay as they were, marked "task halted"; the ones in flight
    finish their current desktop."""
    from composer import lifecycle

    with transaction.atomic():
        operation = _control(actor, operation, "cancel", request)
        if operation.status in (Status.SCHEDULED, Status.QUEUED):
            lifecycle.halt_pending(operation, f"cancelled by {actor.get_username()}")
            operation.status, operation.finished_at = Status.CANCELLED, timezone.now()
        elif operation.status in (Status.RUNNING, Status.PAUSED):
            lifecycle.halt_pending(operation, f"cancelled by {actor.get_username()}")
            operation.status = Status.CANCELLING
        else:
            raise OperationRefused(f"The operation is {operation.get_status_display().lower()}.")
        operation.save(update_fields=["status", "finished_at"])
        record(
            actor=actor,
            action="cancel_operation",
            outcome=Outcome.SUCCEEDED,
            target=operation.audit_target(),
            operation=operation,
            request=request,
        )
    if operation.status == Status.CANCELLING:
        if operation.prepared_at is None:
            # Not started on desktops yet: nothing in flight, end it now.
            Operation.objects.filter(pk=operation.pk).update(prepared_at=timezone.now())
        lifecycle.finish_if_done(operation.pk)
        operation.refresh_from_db()
    return operation


def _switch(actor, operation: Operation, action: str, old: str, new: str, request) -> Operation:
    with transaction.atomic():
        operation = _control(actor, operation, action, request)
        if operation.status != old:
            raise OperationRefused(f"Only a {old} operation can be {action}d.")
        operation.status = new
        operation.save(update_fields=["status"])
        record(
            actor=actor,
            action=f"{action}_operation",
            outcome=Outcome.SUCCEEDED,
            target=operation.audit_target(),
            operation=operation,
            request=request,
        )
    return operation


def pause(actor, operation: Operation, request=None) -> Operation:
    """Desktops in flight finish their current desktop; no new one starts until resumed."""
    return _switch(actor, operation, "pause", Status.RUNNING, Status.PAUSED, request)


def resume(actor, operation: Operation, request=None) -> Operation:
    from composer import dispatch, lifecycle

    operation = _switch(actor, operation, "resume", Status.PAUSED, Status.RUNNING, request)
    dispatch.dispatch(operation.pool.endpoint_id)
    lifecycle.finish_if_done(operation.pk)
    return operation
