"""Operations: the database row is the truth about every request and its progress.

Redis only carries the messages that make workers act on these rows; pages read the rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from composer import kinds
from composer.queue import DEFAULT, URGENT
from pools.stamps import Stamped, StampedQuerySet


class Operation(Stamped):
    class Status(models.TextChoices):
        DRAFT = "draft", "Awaiting approval"  # a plan shown for preview, not yet approved
        SCHEDULED = "scheduled", "Scheduled"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLING = "cancelling", "Cancelling"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"
        REFUSED = "refused", "Refused"  # the frozen plan no longer matched the inventory

    # Asked to run now (queued or further) and not finished: its desktops are taken.
    STARTED = (Status.QUEUED, Status.RUNNING, Status.PAUSED, Status.CANCELLING)
    # Work is under way or will start by itself: pages poll, desktops are spoken for.
    ACTIVE = (Status.SCHEDULED, *STARTED)
    FINISHED = (
        Status.SUCCEEDED,
        Status.PARTIALLY_FAILED,
        Status.FAILED,
        Status.CANCELLED,
        Status.INTERRUPTED,
        Status.REFUSED,
    )

    class LogoffPolicy(models.TextChoices):
        WAIT = "wait", "Wait for users to log off"
        FORCE = "force", "Force logoff after a warning"

    # One of the registered kinds (composer/kinds/): a callable, so a new kind's module is
    # all it takes, with no migration of these choices.
    kind = models.CharField(max_length=20, choices=kinds.choices)
    # The one-time token of the form that asked for it: the same form sent twice (a double
    # click) finds this operation instead of starting a second one.
    submission = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    pool = models.ForeignKey(
        "pools.Pool", on_delete=models.SET_NULL, null=True, blank=True, related_name="operations"
    )
    pool_name = models.CharField(max_length=64, help_text="Kept when the pool is deleted.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="operations"
    )
    # Kind-specific choices: target image version, keep disks, power action, ...
    options = models.JSONField(default=dict, blank=True)
    # The frozen plan an administrator approved (rebalance, recompose); the job executes
    # exactly this and refuses if the inventory no longer matches it.
    plan = models.JSONField(default=dict, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    logoff_policy = models.CharField(
        max_length=10, choices=LogoffPolicy.choices, default=LogoffPolicy.WAIT
    )
    warning_message = models.CharField(max_length=500, blank=True)
    grace_seconds = models.PositiveIntegerField(default=300)
    stop_on_error = models.BooleanField(default=False)
    # A helpdesk-sized action (one desktop, started now): its jobs go to the urgent queue,
    # which every worker serves first, and its desktop is dispatched before bulk work
    # (composer/queue.py, composer/dispatch.py), so a user on the phone waits for one
    # desktop, not behind a 250-desktop provision.
    urgent = models.BooleanField(default=False, editable=False)
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Set once the preparation (replicas) is done; only then are desktops handed to workers.
    prepared_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [
            models.Index(fields=["status"], name="operation_status"),
            # The newest change, of a pool's operations and of all (portal/live.py).
            models.Index(fields=["pool", "updated_at"], name="operation_pool_updated"),
            models.Index(fields=["updated_at"], name="operation_updated"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.pool_name} #{self.pk}"

    def get_absolute_url(self):
        return reverse("composer:operation", args=[self.pk])

    @property
    def job_id(self) -> str:
        return f"operation-{self.pk}"

    def audit_target(self):
        """What the audit log names as its target: the one desktop it acts on (a helpdesk
        refresh is about that desktop, not its pool), else its pool (whose desktops the
        event's details list)."""
        tasks = list(self.tasks.exclude(desktop=None).select_related("desktop")[:2])
        if len(tasks) == 1:
            return tasks[0].desktop
        return self.pool

    @property
    def spec(self) -> kinds.OperationKind:
        """Its kind: what it does and how the machinery treats it (composer/kinds/)."""
        return kinds.get(self.kind)

    @property
    def queue_name(self) -> str:
        """The RQ queue of its jobs (composer/queue.py)."""
        return URGENT if self.urgent else DEFAULT

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def forces_logoff(self) -> bool:
        return self.logoff_policy == self.LogoffPolicy.FORCE


class DesktopTaskQuerySet(StampedQuerySet):
    """Which desktops an operation has a claim on: two rules, each written once.

    They differ on purpose, by scheduled operations. A desktop in a scheduled operation is
    spoken for (held: the reconciler leaves it alone, it is not stuck), but a request to act
    on it now does not skip it: starting now replaces the pending schedule
    (services._activate halts that schedule's task), so only started operations make a
    desktop busy.
    """

    def held(self):
        """Unfinished tasks of active operations, scheduled ones included: their desktops are
        spoken for, neither orphaned nor stuck (reconciler, dashboard, helpdesk).

        Only tasks whose desktop still exists: these ids go into NOT IN (...), which a single
        NULL (a desktop deleted meanwhile) would make match nothing."""
        return self.filter(
            operation__status__in=Operation.ACTIVE,
            status__in=DesktopTask.UNFINISHED,
            desktop__isnull=False,
        )

    def busy(self):
        """Unfinished tasks of started operations (queued, running, paused, cancelling): a
        new request or a plan skips their desktops. A scheduled operation does not make a
        desktop busy; starting now replaces it instead (services._activate)."""
        return self.filter(
            operation__status__in=Operation.STARTED, status__in=DesktopTask.UNFINISHED
        )

    def scheduled(self):
        """Tasks waiting for their operation's scheduled start: a desktop has at most one
        (DESIGN.md, "Options"); starting now replaces it (services/schedule.py)."""
        return self.filter(
            operation__status=Operation.Status.SCHEDULED, status=DesktopTask.Status.PENDING
        )


class DesktopTask(Stamped):
    """One desktop's progress inside an operation, recorded step by step."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DISPATCHED = "dispatched", "Dispatched"  # a worker has been asked to run it
        RUNNING = "running", "Running"
        # A user is logged on, or the hypervisor does not answer: tried again later.
        WAITING = "waiting", "Waiting"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        HALTED = "halted", "Task halted"  # cancelled or stopped before it was reached
        SKIPPED = "skipped", "Skipped"  # not touched, with the reason (rebalance)

    IN_FLIGHT = (Status.DISPATCHED, Status.RUNNING)
    UNFINISHED = (Status.PENDING, Status.WAITING, *IN_FLIGHT)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.HALTED, Status.SKIPPED)

    objects = DesktopTaskQuerySet.as_manager()

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="tasks")
    desktop = models.ForeignKey(
        "pools.Desktop", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    desktop_name = models.CharField(max_length=15)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    step = models.CharField(max_length=40, blank=True, help_text="The step running or last done.")
    # Rebalance: where the desktop goes (from the frozen plan).
    target_datastore = models.ForeignKey(
        "pools.Datastore", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times handed to a worker.")
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # "host:pid" of the process running it, so the reconciler can tell a dead runner from a
    # live one (rq's work horse outlives a killed worker process).
    runner = models.CharField(max_length=300, blank=True)
    # The rq job running it: its own, or that of the desktop before it when the same work
    # horse carried on with it (jobs.run_desktop). What the reconciler asks rq about.
    rq_job_id = models.CharField(max_length=200, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When a wait ends.")
    # Since when the hypervisor has not answered this desktop's step (a transport failure);
    # cleared as soon as a step gets through.
    unreachable_since = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["desktop_name"]
        indexes = [
            models.Index(fields=["operation", "status"], name="opdesktop_op_status"),
            # The newest change of an operation's desktops (portal/live.py).
            models.Index(fields=["operation", "updated_at"], name="opdesktop_op_updated"),
            # Failed desktops by kind for /metrics (portal/metrics.py): the few failed rows,
            # not every task ever run.
            models.Index(
                fields=["operation"],
                condition=models.Q(status="failed"),
                name="opdesktop_failed",
            ),
        ]

    def __str__(self):
        return f"{self.desktop_name} in {self.operation_id}"

    @property
    def job_id(self) -> str:
        # One id per attempt, so a task handed out again after a crash never collides with
        # the job that died.
        return f"operation-{self.operation_id}-desktop-{self.pk}-{self.attempts}"


class HypervisorTask(models.Model):
    """A hypervisor task started for a step and not yet seen to finish.

    Written as soon as vCenter hands out the task id, removed once it ends. A job restarted
    after a crash finds the task here and waits for it instead of starting the work twice.
    """

    endpoint = models.ForeignKey(
        "pools.HypervisorEndpoint", on_delete=models.CASCADE, related_name="tasks_under_way"
    )
    key = models.CharField(max_length=300)  # what the task does to what, e.g. "clone:VDI-001"
    task_id = models.CharField(max_length=100)
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "key"], name="one_task_per_key")]

    def __str__(self):
        return f"{self.key} ({self.task_id})"


class EndpointCheck(models.Model):
    """A connection test or an inventory sync an administrator asked for, run as a job (a
    slow vCenter must not hold a web request); the Hypervisors page shows it live."""

    class Kind(models.TextChoices):
        TEST = "test", "Test connection"
        SYNC = "sync", "Sync inventory"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    endpoint = models.ForeignKey(
        "pools.HypervisorEndpoint", on_delete=models.CASCADE, related_name="checks"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "kind", "-id"], name="check_latest")]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.endpoint_id}: {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def job_id(self) -> str:
        return f"endpoint-check-{self.pk}"


class Webhook(models.Model):
    """An HTTPS endpoint an administrator registered for operation events
    (composer/webhooks/): each event it subscribes to becomes a signed POST."""

    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000)
    # Event names (composer/webhooks/events.py). Matched in Python: an estate has a handful
    # of hooks, and emitting reads them all in one query.
    events = models.JSONField(default=list)
    # Needed in clear to sign each delivery, so stored as is; shown once, when created or
    # rotated, and never listed again (pages, API).
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        # Administrators only, reading included: no view_ permission for auditors to inherit
        # (portal/roles.py gives auditors every view_ permission).
        default_permissions = ()
        permissions = [("manage_webhooks", "Manage webhooks")]

    def __str__(self):
        return self.name


class WebhookDelivery(models.Model):
    """One event for one hook: what was sent, each attempt's outcome, when the next is due."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    payload = models.JSONField(default=dict)
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, help_text="The first 1 KB of the answer.")
    error = models.TextField(blank=True)
    # When a pending delivery is (next) due; while an attempt is under way, when it is
    # presumed lost (the reconciler then sends it again: composer/webhooks/delivery.py).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        default_permissions = ()
        indexes = [
            models.Index(fields=["webhook", "-id"], name="delivery_webhook_newest"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]

    def __str__(self):
        return f"{self.event} to {self.webhook_id} #{self.pk}"

    def job_id(self, attempt: int) -> str:
        return f"webhook-delivery-{self.pk}-{attempt}"
