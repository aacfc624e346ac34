"""The audit log: an append-only record of who did what, to which object, with what outcome.

Every row carries the sha256 of its content and of the row before it (`prev_hash`), so the
log is a hash chain: changing or removing a row breaks the chain at that row, and
`manage.py verify_audit` finds it; its signed checkpoints, kept outside the database, also
show rows removed from the end or a chain rewritten from scratch (portal/audit.py). On
PostgreSQL a trigger also refuses UPDATE and DELETE (portal's migrations 0003 and 0004, from
before the log was an app of its own), and the role the portal runs as may only INSERT and
SELECT here (`manage.py grant_runtime_role`). Rows are
chained in id order; `AuditEvent.save()` takes the chain's lock so that two writers never
chain onto the same previous row.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from django.conf import settings
from django.db import connections, models, router, transaction
from django.utils import timezone

from audit import labels

# prev_hash of the first row.
GENESIS_HASH = "0" * 64

# Key of the PostgreSQL advisory lock that serializes appends (any fixed 64-bit number that
# nothing else uses; these are the bytes of "auditlog").
CHAIN_LOCK_KEY = 0x61756469746C6F67

# The canonical form new rows are hashed with; each row keeps the version it was hashed with
# (hash_version), so rows hashed the old way stay verifiable. Bump it when the form changes,
# and keep the old form in HASHED_FIELDS.
HASH_VERSION = 2

# What each version's hash covers, besides prev_hash and the version itself ("v").
# Version 1 (rows written before migration 0004) left out the row's id and actor_id.
# Version 2 covers every column but `hash` (tests/portal/test_audit_integrity.py holds
# new columns to that).
HASHED_FIELDS = {
    1: (
        "at",
        "actor_name",
        "role",
        "action",
        "target_type",
        "target_id",
        "target_name",
        "outcome",
        "message",
        "parameters",
        "operation_id",
        "request_id",
        "ip",
    ),
}
HASHED_FIELDS[2] = ("id", "actor_id", *HASHED_FIELDS[1])


def canonical_content(event) -> str:
    """The canonical text a row's hash covers: its recorded content and prev_hash, in the
    form of the row's hash_version.

    Takes any object with the model's attributes, so migrations (historical models) and
    verify_audit use the very same form; one without hash_version (the model before
    migration 0004) is version 1.
    """
    version = getattr(event, "hash_version", None) or 1
    if version not in HASHED_FIELDS:
        raise ValueError(f"unknown audit hash version {version!r}")
    content = {"v": version, "prev_hash": event.prev_hash}
    for name in HASHED_FIELDS[version]:
        value = getattr(event, name)
        if name == "at":
            value = value.astimezone(UTC).isoformat(timespec="microseconds")
        elif name == "parameters":
            value = _canonical_json_value(value)
        elif name == "ip":
            value = value or None
        content[name] = value
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


def next_id(model, using: str) -> int:
    """The id the next audit row gets, taken while the chain's lock is held, so that ids
    follow the chain and the hash can cover the row's own id.

    PostgreSQL: the id column's sequence (nextval needs only USAGE on it). SQLite: one past
    the largest id the table ever had (AUTOINCREMENT's own counter included), under the write
    lock that BEGIN IMMEDIATE took.
    """
    connection = connections[using]
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
            return cursor.fetchone()[0]
        cursor.execute(f"SELECT MAX(id) FROM {connection.ops.quote_name(table)}")
        largest = cursor.fetchone()[0] or 0
        if connection.vendor == "sqlite":
            cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            row = cursor.fetchone()
            largest = max(largest, row[0] if row else 0)
        return largest + 1


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
        raise PermissionError("audit events cannot be changed")

    def delete(self):
        raise PermissionError("audit events cannot be deleted")

    def bulk_create(self, *args, **kwargs):
        raise PermissionError("audit events are chained one by one: use audit.log.record()")

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
    # Hashed like every column, so it never changes: deleting a user leaves their id here
    # (no foreign key constraint, nothing done on delete; ids are never reused), and
    # actor_name says who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
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
    # Which canonical form `hash` was computed with (HASHED_FIELDS): save() writes
    # HASH_VERSION; rows from before migration 0004 are version 1. Part of the hash from
    # version 2 on, and never lower than the row before it (verify_audit checks), so a row
    # cannot be passed off as hashed the older way.
    hash_version = models.PositiveSmallIntegerField(editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        # The table keeps the name it had when the log was part of the portal app.
        db_table = "portal_auditevent"
        ordering = ["-at", "-id"]
        permissions = [
            ("view_audit", "Can review the audit log"),
            ("export_audit", "Can export the audit log"),
        ]
        indexes = [
            # The audit page's filters that match exactly, newest first.
            models.Index(fields=["outcome", "at"], name="audit_outcome_at"),
            models.Index(fields=["action", "at"], name="audit_action_at"),
            # A desktop's (or pool's) own events, on its page.
            models.Index(fields=["target_type", "target_id", "at"], name="audit_target_at"),
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
            self.hash_version = HASH_VERSION
            self._normalize()
            lock_chain(using)
            self.id = next_id(type(self), using)
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

    @property
    def action_display(self) -> str:
        return labels.action_name(self.action)

    @property
    def details(self) -> list[tuple[str, str]]:
        """The parameters as labelled fields (audit/labels.py)."""
        return labels.details(self.parameters)

    def _normalize(self) -> None:
        """Give every hashed field the value the database will give back, so the hash
        computed now matches the one recomputed from the stored row."""
        for field in self._meta.concrete_fields:
            if field.attname in ("id", "hash", "prev_hash", "parameters"):
                continue
            setattr(self, field.attname, field.to_python(getattr(self, field.attname)))
        if timezone.is_naive(self.at):
            self.at = timezone.make_aware(self.at)
        self.ip = self.ip or None
        # What a JSON column gives back: string keys, lists for tuples.
        self.parameters = json.loads(json.dumps(self.parameters or {}))


class VerifyRun(models.Model):
    """The outcome of each `manage.py verify_audit`, so that /metrics can show the last one
    with one indexed query (portal/metrics.py). Not part of the chain: an alert, not
    evidence. The command's exit code stays the authority (a database administrator could
    write a row here), and the count of a good run lets the chain's length be read without
    counting every event at each scrape."""

    class Outcome(models.TextChoices):
        OK = "ok", "Verified"
        TAMPERED = "tampered", "Tampered"
        UNUSABLE = "unusable", "Key or checkpoint file unusable"

    at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    events = models.PositiveBigIntegerField(default=0, help_text="Events verified.")
    last_event_id = models.BigIntegerField(
        null=True, blank=True, help_text="The newest event verified (a good run)."
    )

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.outcome}"
