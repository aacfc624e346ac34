"""The steps operations are made of, and the runner that does them to one desktop.

Every kind of operation (composer/kinds/) is a list of named steps taken from here. The
runner records the step on the desktop's row before running it, so a desktop picked up again
after a crash starts at the step it was in. Every step is idempotent: the drivers make
hypervisor calls safe to repeat, and the database updates here set values rather than add
to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from composer import endpoint_drivers, step_timings
from composer.drivers.base import POWER_OFF, CustomizationSpec, Driver, DriverError, NotFound
from composer.models import DesktopTask, Operation
from composer.queue import quick_connection
from composer.replicas import ensure_replica, replica_info, sync_datastore
from pools import sessions
from pools.models import Desktop, ImageVersion, PersistentDisk, Pool
from pools.states import DesktopState, transition

S = DesktopState

log = logging.getLogger(__name__)

# How long a desktop whose user is logged on waits before its session is checked again.
WAIT_RECHECK_SECONDS = 30


class Wait(Exception):
    """The desktop cannot go on yet (a user is logged on): park it and look again later."""

    def __init__(self, seconds: int, why: str):
        super().__init__(why)
        self.seconds = seconds


class Superseded(Exception):
    """The desktop was handed to another worker while this one was presumed dead."""


@dataclass
class Context:
    task: DesktopTask
    operation: Operation
    desktop: Desktop
    pool: Pool
    driver: Driver

    @property
    def name(self) -> str:
        return self.desktop.name

    @property
    def kind(self):
        return self.operation.spec

    def disks(self) -> list[PersistentDisk]:
        return list(
            PersistentDisk.objects.filter(desktop=self.desktop)
            .select_related("datastore")
            .order_by("name")
        )

    def target_version(self) -> ImageVersion:
        """The image version the desktop is rebuilt from (the kind says: recompose's target,
        else its own)."""
        return self.kind.target_version(self.operation, self.desktop)


def ensure_state(desktop: Desktop, state: str) -> None:
    # A resumed step may find the desktop already in the state it moves to.
    if desktop.state != state:
        transition(desktop, state)


def save(desktop: Desktop, *fields: str) -> None:
    desktop.save(update_fields=[*fields, "updated_at"])


# -- the steps ------------------------------------------------------------------------------


def wait_for_logoff(ctx: Context) -> None:
    """Wait for the user to log off, or warn, give the grace period, then log them off."""
    if not ctx.driver.reports_sessions and not ctx.pool.endpoint.agent_token_prefix:
        return  # nobody reports sessions here (vCenter without agents): nothing to wait for
    try:
        vm = ctx.driver.get_vm(ctx.name)
    except NotFound:
        if ctx.kind.vm_may_be_gone:
            return  # the VM vanished: nobody to wait for, and delete cleans up the rest
        raise
    if not ctx.driver.reports_sessions:
        return _wait_for_reported_logoff(ctx, vm)
    if ctx.desktop.session_user != vm.session_user:
        ctx.desktop.session_user = vm.session_user
        save(ctx.desktop, "session_user")
    if not vm.session_user:
        return
    if not ctx.operation.forces_logoff:
        raise Wait(WAIT_RECHECK_SECONDS, f"waiting for {vm.session_user} to log off")
    warned = ctx.task.retry_at is not None
    if not warned:
        ctx.driver.send_message(ctx.name, _warning(ctx))
        raise Wait(
            ctx.operation.grace_seconds, f"{vm.session_user} warned; logoff forced after grace"
        )
    ctx.driver.log_off(ctx.name)
    ctx.desktop.session_user = ""
    save(ctx.desktop, "session_user")


def _warning(ctx: Context) -> str:
    return ctx.operation.warning_message or (
        f"This desktop goes into maintenance in {ctx.operation.grace_seconds} seconds. "
        "Save your work and log off."
    )


def _wait_for_reported_logoff(ctx: Context, vm) -> None:
    """The same policy on a hypervisor that cannot tell who is logged on (vCenter), from
    what the desktop's agent reported (pools/sessions.py). DESIGN: an unknown session (no
    recent report) counts as logged on, so "wait" never rebuilds a desktop under a user it
    cannot see; "force" warns through the agent, which receives the message and the logoff
    request with its next report (composer/agent_sessions.py), and goes on after the grace
    period whether or not the agent acted: the desktop is powered off and rebuilt anyway."""
    if vm.power == POWER_OFF:
        return  # nobody works on a powered-off desktop
    # The agent may have reported since the row was read.
    ctx.desktop.refresh_from_db(fields=["session_user", "session_reported_at"])
    session = sessions.reported_session(ctx.desktop.session_user, ctx.desktop.session_reported_at)
    if not session.logged_on:
        return
    who = session.user or "a user the desktop's agent has not reported on (session unknown)"
    if not ctx.operation.forces_logoff:
        raise Wait(WAIT_RECHECK_SECONDS, f"waiting for {who} to log off")
    if ctx.task.retry_at is None:  # not warned yet
        grace_ends = timezone.now() + timedelta(seconds=ctx.operation.grace_seconds)
        ctx.desktop.agent_actions = sessions.warning_actions(_warning(ctx), grace_ends)
        save(ctx.desktop, "agent_actions")
        ctx.driver.send_message(ctx.name, _warning(ctx))  # logged: vCenter cannot show it
        raise Wait(
            ctx.operation.grace_seconds,
            f"{who} warned through the desktop's agent; goes on after the grace period",
        )
    # The grace period is over: what was not handed over must not end a later session.
    ctx.desktop.session_user, ctx.desktop.agent_actions = "", []
    save(ctx.desktop, "session_user", "agent_actions")


def maintenance(ctx: Context) -> None:
    ensure_state(ctx.desktop, S.MAINTENANCE)


def deleting(ctx: Context) -> None:
    ensure_state(ctx.desktop, S.DELETING)


def power_off(ctx: Context) -> None:
    try:
        ctx.driver.power_off(ctx.name)
    except NotFound:
        if not ctx.kind.vm_may_be_gone:
            raise


def revert(ctx: Context) -> None:
    ctx.driver.revert(ctx.name, ctx.desktop.checkpoint)
    ctx.desktop.delta_mb = ctx.driver.get_vm(ctx.name).delta_mb
    save(ctx.desktop, "delta_mb")


def detach_disks(ctx: Context) -> None:
    # The rows keep pointing at the desktop: the disk is only off the VM while it is rebuilt,
    # and attach_disks puts it back even after a crash in between.
    for disk in ctx.disks():
        ctx.driver.detach_disk(ctx.name, disk.name)


def attach_disks(ctx: Context) -> None:
    for disk in ctx.disks():
        ctx.driver.attach_disk(ctx.name, disk.name, disk.datastore.name)


def move_vm(ctx: Context) -> None:
    target = ctx.task.target_datastore
    ctx.driver.move_vm(ctx.name, target.name)
    ctx.desktop.datastore = target
    save(ctx.desktop, "datastore")


def move_disks(ctx: Context) -> None:
    target = ctx.task.target_datastore
    for disk in ctx.disks():
        ctx.driver.move_disk(disk.name, disk.datastore.name, target.name)
        if disk.datastore_id != target.pk:
            disk.datastore = target
            disk.save(update_fields=["datastore"])


def relink(ctx: Context) -> None:
    """A new delta disk over the target version's replica, in place of the old delta and its
    checkpoint, swapped in one step by the driver so the desktop is never without a system
    disk. Persistent disks stay attached throughout (they are independent disks)."""
    version = ctx.target_version()
    replica = ensure_replica(version, ctx.desktop.datastore)
    ctx.driver.relink(ctx.name, replica_info(replica))
    ctx.desktop.replica, ctx.desktop.image_version = replica, version
    ctx.desktop.checkpoint = ""
    ctx.desktop.delta_mb = ctx.driver.get_vm(ctx.name).delta_mb
    save(ctx.desktop, "replica", "image_version", "checkpoint", "delta_mb")


def clone(ctx: Context) -> None:
    replica = ensure_replica(ctx.desktop.image_version, ctx.desktop.datastore)
    vm = ctx.driver.create_linked_clone(ctx.name, replica_info(replica), ctx.desktop.datastore.name)
    ctx.desktop.replica, ctx.desktop.driver_ref, ctx.desktop.delta_mb = replica, vm.ref, vm.delta_mb
    save(ctx.desktop, "replica", "driver_ref", "delta_mb")


def customize(ctx: Context) -> None:
    ensure_state(ctx.desktop, S.CUSTOMIZING)
    ctx.driver.customize(ctx.name, CustomizationSpec(ctx.name, ctx.pool.domain))


def new_persistent_disk(ctx: Context) -> None:
    if not ctx.pool.persistent_disk_mb:
        return
    name = f"{ctx.name}-pd"
    disk, _ = PersistentDisk.objects.get_or_create(
        name=name,
        defaults={
            "pool": ctx.pool,
            "desktop": ctx.desktop,
            "datastore": ctx.desktop.datastore,
            "size_mb": ctx.pool.persistent_disk_mb,
            "user": ctx.desktop.assigned_user,
        },
    )
    ctx.driver.create_disk(name, disk.datastore.name, disk.size_mb)
    ctx.driver.attach_disk(ctx.name, name, disk.datastore.name)


def checkpoint(ctx: Context) -> None:
    ctx.desktop.checkpoint = ctx.driver.checkpoint(ctx.name)
    ctx.desktop.delta_mb = ctx.driver.get_vm(ctx.name).delta_mb
    save(ctx.desktop, "checkpoint", "delta_mb")


def power_ready(ctx: Context) -> None:
    """Back to ready as the pool's power policy wants: Available (on) or Provisioned (off)."""
    if ctx.pool.ready_state == S.AVAILABLE:
        ctx.driver.power_on(ctx.name)
    else:
        ctx.driver.power_off(ctx.name)
    ensure_state(ctx.desktop, ctx.pool.ready_state)


def power_action(ctx: Context) -> None:
    action = ctx.operation.options.get("action")
    if action == "start":
        ctx.driver.power_on(ctx.name)
        ensure_state(ctx.desktop, S.AVAILABLE)
    elif action == "shutdown":
        ctx.driver.shutdown(ctx.name)
        ensure_state(ctx.desktop, S.PROVISIONED)
    elif action == "restart":
        if ctx.driver.get_vm(ctx.name).power == "on":
            ctx.driver.restart(ctx.name)
        else:
            ctx.driver.power_on(ctx.name)
        ensure_state(ctx.desktop, S.AVAILABLE)
    else:
        raise ValueError(f"unknown power action {action!r}")


def log_off(ctx: Context) -> None:
    if ctx.operation.warning_message:
        ctx.driver.send_message(ctx.name, ctx.operation.warning_message)
    ctx.driver.log_off(ctx.name)
    ctx.desktop.session_user = ""
    save(ctx.desktop, "session_user")
    if ctx.desktop.state in (S.CONNECTED, S.DISCONNECTED):
        ensure_state(ctx.desktop, S.AVAILABLE)


def release_disks(ctx: Context) -> None:
    """Delete: kept disks stay listed, detached, ready to attach to another desktop; the
    others are deleted only because the administrator asked for it."""
    keep = ctx.operation.options.get("keep_disks", True)
    for disk in ctx.disks():
        ctx.driver.detach_disk(ctx.name, disk.name)
        if keep:
            disk.desktop = None
            disk.save(update_fields=["desktop"])
        else:
            ctx.driver.delete_disk(disk.name, disk.datastore.name)
            disk.delete()


def attach_kept_disk(ctx: Context) -> None:
    """Give a kept (detached) persistent disk to this desktop, moving it to the desktop's
    datastore first so the two stay together for rebalance."""
    disk = PersistentDisk.objects.select_related("datastore").get(pk=ctx.operation.options["disk"])
    if disk.desktop_id not in (None, ctx.desktop.pk):
        raise DriverError(f"disk {disk.name} is attached to another desktop")
    if disk.datastore_id != ctx.desktop.datastore_id:
        ctx.driver.move_disk(disk.name, disk.datastore.name, ctx.desktop.datastore.name)
        disk.datastore = ctx.desktop.datastore
    ctx.driver.attach_disk(ctx.name, disk.name, disk.datastore.name)
    disk.desktop, disk.pool = ctx.desktop, ctx.pool
    disk.save(update_fields=["desktop", "pool", "datastore"])


def delete_vm(ctx: Context) -> None:
    ctx.driver.delete_vm(ctx.name)


def forget(ctx: Context) -> None:
    ctx.desktop.delete()


Step = Callable[[Context], None]

PROVISION = [
    ("clone", clone),
    ("customize", customize),
    ("persistent_disk", new_persistent_disk),
    ("checkpoint", checkpoint),
    ("power", power_ready),
]
# Recompose and the tail of rebalance: a new delta over a replica, customized again. The
# persistent disks stay attached while the system disk is swapped (attach_disks only puts
# back what rebalance detached to move), so a failure at any step leaves a usable desktop.
REBUILD = [
    ("relink", relink),
    ("customize", customize),
    ("checkpoint", checkpoint),
    ("attach_disks", attach_disks),
    ("power", power_ready),
]


def run(task: DesktopTask, operation: Operation) -> None:
    """Run the operation's steps on the task's desktop, from the step it recorded last.

    Raises Wait to park the desktop, DriverError when the hypervisor refuses a step.
    """
    desktop = Desktop.objects.select_related(
        "pool__endpoint", "datastore", "image_version__image", "replica"
    ).get(pk=task.desktop_id)
    steps = operation.spec.steps_for(operation)
    names = [name for name, _ in steps]
    start = names.index(task.step) if task.step in names else 0
    ctx = Context(
        task, operation, desktop, desktop.pool, endpoint_drivers.for_endpoint(desktop.pool.endpoint)
    )
    ctx.driver.bind_vm(desktop.name, desktop.driver_ref)
    where_it_was = desktop.datastore
    for index, (name, step) in enumerate(steps[start:]):
        # Fencing: write the step only while this attempt still owns the desktop, so a
        # runner the reconciler gave up on stops at its next step instead of racing the new.
        # A step done means the hypervisor answers again: its outage clock stops.
        progress = {"unreachable_since": None} if index else {}
        owned = DesktopTask.objects.filter(
            pk=task.pk, attempts=task.attempts, status=DesktopTask.Status.RUNNING
        ).update(step=name, **progress)
        if not owned:
            raise Superseded(task.pk)
        task.step = name
        # DEBUG: at INFO, a step a line would be some ten lines a desktop, 20,000 for a
        # pool of 2,000; the line of the desktop's end names the step it failed at.
        log.debug("desktop %s: step %s", ctx.name, name)
        began = time.monotonic()
        step(ctx)
        # Only steps that finished: one that waits or fails says nothing of how long it takes.
        step_timings.record(operation.kind, name, time.monotonic() - began)
    step_timings.flush(quick_connection(), unless_recent=True)
    # Space moved on the datastore it was on, and on the one it went to (rebalance).
    for datastore in {where_it_was, ctx.desktop.datastore}:
        sync_datastore(datastore)


def wait_until(seconds: int):
    return timezone.now() + timedelta(seconds=seconds)
