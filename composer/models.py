"""Operations: the database row is the truth about every request and its progress.

Redis only carries the messages that make workers act on these rows; pages read the rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class Operation(models.Model):
    class Kind(models.TextChoices):
        PROVISION = "provision", "Provision"
        REFRESH = "refresh", "Refresh"
        RECOMPOSE = "recompose", "Recompose"
        REBALANCE = "rebalance", "Rebalance"
        DELETE = "delete", "Delete"
        POWER = "power", "Power"
        LOGOFF = "logoff", "Log off"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    pool = models.ForeignKey(
        "pools.Pool", on_delete=models.SET_NULL, null=True, blank=True, related_name="operations"
    )
    pool_name = models.CharField(max_length=64, help_text="Kept when the pool is deleted.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="operations"
    )
    options = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Set once the preparation (replicas) is done; only then are desktops handed to workers.
    prepared_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["status"], name="operation_status")]

    def __str__(self):
        return f"{self.get_kind_display()} {self.pool_name} #{self.pk}"

    def get_absolute_url(self):
        return reverse("composer:operation", args=[self.pk])

    @property
    def job_id(self) -> str:
        return f"operation-{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class OperationDesktop(models.Model):
    """One desktop's progress inside an operation, recorded step by step."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DISPATCHED = "dispatched", "Dispatched"  # a worker has been asked to run it
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        HALTED = "halted", "Task halted"

    IN_FLIGHT = (Status.DISPATCHED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.HALTED)

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="tasks")
    desktop = models.ForeignKey(
        "pools.Desktop", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    desktop_name = models.CharField(max_length=15)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    step = models.CharField(max_length=40, blank=True, help_text="The step running or last done.")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["desktop_name"]
        indexes = [models.Index(fields=["operation", "status"], name="opdesktop_op_status")]

    def __str__(self):
        return f"{self.desktop_name} in {self.operation_id}"

    @property
    def job_id(self) -> str:
        return f"operation-{self.operation_id}-desktop-{self.pk}"
