"""The audit log: an append-only record of who did what, to which object, with what outcome.

Every row carries the sha256 of its content and of the row before it (`prev_hash`), so the
log is a hash chain: changing or removing a row breaks the chain at that row, and
`manage.py verify_audit` finds it. On PostgreSQL a trigger also refuses UPDATE and DELETE
(migration 0003). Rows are chained in id order; `AuditEvent.save()` takes the chain's lock
so that two writers never chain onto the same previous row.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from django.conf import settings
from django.db import connections, models, router, transaction
from django.utils import timezone

# prev_hash of the first row.
GENESIS_HASH = "0" * 64

# Key of the PostgreSQL advisory lock that serializes appends (any fixed 64-bit number that
# nothing else uses; these are the bytes of "auditlog").
CHAIN_LOCK_KEY = 0x61756469746C6F67

# Bump when the canonical form changes, so rows hashed the old way stay verifiable.
HASH_VERSION = 1


def canonical_content(event) -> str:
    """The canonical text a row's hash covers: its recorded content and prev_hash.

    Takes any object with the model's attributes, so migrations (historical models) and
    verify_audit use the very same form. actor_id is left out on purpose: it is cleared when
    the user is deleted, while actor_name keeps who it was.
    """
    content = {
        "v": HASH_VERSION,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_name": event.actor_name,
        "role": event.role,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_name": event.target_name,
        "outcome": event.outcome,
        "message": event.message,
        "parameters": _canonical_json_value(event.parameters),
        "operation_id": event.operation_id,
        "request_id": event.request_id,
        "ip": event.ip or None,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(event) -> str:
    return hashlib.sha256(canonical_content(event).encode()).hexdigest()


def _canonical_json_value(value):
    # PostgreSQL's jsonb keeps numbers as numeric and prints 1e16 back as 10000000000000000,
    # which Python reads as an int: write whole floats as ints so both read the same.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_json_value(v) for v in value]
    return value


def lock_chain(using: str) -> None:
    """Serialize appends until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock, released at commit or rollback; the next
    writer then reads the committed head. SQLite: nothing to do, the IMMEDIATE transaction
    mode (portal/env.py) already takes the database's write lock at BEGIN.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


class AuditEventQuerySet(models.QuerySet):
    """Bulk writes would bypass the chain; refuse them (PostgreSQL's trigger also would)."""

    def update(self, **kwargs):
        # The only update allowed is the one Django's on_delete=SET_NULL makes when a user is
        # deleted: actor_id is not hashed and actor_name keeps who it was.
        if set(kwargs) == {"actor"} and kwargs["actor"] is None:
            return super().update(**kwargs)
        raise PermissionError("audit events cannot be changed")

    def delete(self):
        raise PermissionError("audit events cannot be deleted")

    def bulk_create(self, *args, **kwargs):
        raise PermissionError("audit events are chained one by one: use portal.audit.record()")

    def bulk_update(self, *args, **kwargs):
        raise PermissionError("audit events cannot be changed")


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        REQUESTED = "requested", "Requested"
        PLANNED = "planned", "Planned"  # a recompose or rebalance plan awaiting approval
        DENIED = "denied", "Denied"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"  # the request was invalid (for example: does not fit)
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Copied, so the record stays readable after the user is renamed or removed.
    actor_name = models.CharField(max_length=150)
    role = models.CharField(max_length=50, blank=True)
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    message = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    # PROTECT: the operation id is part of the hash, so SET_NULL would break the chain (and
    # PostgreSQL's trigger would refuse it). Operations are history; nothing deletes them.
    operation = models.ForeignKey(
        "composer.Operation", on_delete=models.PROTECT, null=True, blank=True, related_name="audit"
    )
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    # The chain: sha256 (hex) of canonical_content(), which includes prev_hash. prev_hash is
    # unique (see Meta), so even a bug in the locking could not fork the chain: the second
    # writer to chain onto a row fails instead.
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        permissions = [
            ("view_audit", "Can review the audit log"),
            ("export_audit", "Can export the audit log"),
        ]
        indexes = [
            # The audit page's filters that match exactly, newest first.
            models.Index(fields=["outcome", "at"], name="audit_outcome_at"),
            models.Index(fields=["action", "at"], name="audit_action_at"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["prev_hash"], name="audit_prev_hash_unique"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.outcome}"

    def save(self, *args, **kwargs):
        # Append-only: a row is written once, chained onto the newest row.
        if not self._state.adding:
            raise PermissionError("audit events cannot be changed")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            self._normalize()
            lock_chain(using)
            head = (
                type(self)
                ._default_manager.using(using)
                .order_by("-id")
                .values_list("hash", flat=True)
                .first()
            )
            self.prev_hash = head or GENESIS_HASH
            self.hash = compute_hash(self)
            kwargs["force_insert"] = True
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit events cannot be deleted")

    def verify(self) -> bool:
        """Whether the row's content still matches its hash."""
        return compute_hash(self) == self.hash

    def _normalize(self) -> None:
        """Give every hashed field the value the database will give back, so the hash
        computed now matches the one recomputed from the stored row."""
        for field in self._meta.concrete_fields:
            if field.attname in ("id", "actor_id", "hash", "prev_hash", "parameters"):
                continue
            setattr(self, field.attname, field.to_python(getattr(self, field.attname)))
        if timezone.is_naive(self.at):
            self.at = timezone.make_aware(self.at)
        self.ip = self.ip or None
        # What a JSON column gives back: string keys, lists for tuples.
        self.parameters = json.loads(json.dumps(self.parameters or {}))
