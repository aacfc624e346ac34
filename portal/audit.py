"""Writing the audit log. Call `record()` inside the transaction of the change it records.

Each event is chained onto the newest one (see portal/models.py). On PostgreSQL the chain's
lock is held until the caller's transaction ends, so call record() last in a transaction,
after any row locks it takes: a transaction that records and then waits for a row lock can
deadlock with one holding that row and waiting to record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from portal.models import GENESIS_HASH, HASHED_FIELDS, AuditEvent, compute_hash
from portal.roles import role_of

Outcome = AuditEvent.Outcome


def record(
    *,
    actor,
    action: str,
    outcome: str,
    target: Any = None,
    operation=None,
    parameters: dict | None = None,
    message: str = "",
    request=None,
) -> AuditEvent:
    authenticated = actor is not None and actor.is_authenticated
    target_type = target._meta.model_name if target is not None else ""
    with transaction.atomic():
        event = AuditEvent(
            actor=actor if authenticated else None,
            actor_name=actor.get_username() if authenticated else "anonymous",
            role=role_of(actor),
            action=action,
            target_type=target_type,
            target_id=str(target.pk) if target is not None and target.pk is not None else "",
            target_name=str(target) if target is not None else "",
            outcome=outcome,
            message=message,
            parameters=parameters or {},
            operation=operation,
            request_id=getattr(request, "request_id", "") if request is not None else "",
            ip=_client_ip(request),
        )
        # save() takes the chain's lock, reads the newest hash and sets prev_hash and hash.
        event.save()
    return event


def _client_ip(request) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None


@dataclass(frozen=True)
class Verification:
    count: int  # events checked
    last: AuditEvent | None  # the newest event checked (its hash anchors the whole log)
    bad: AuditEvent | None = None  # the first event where the chain breaks
    problem: str = ""
    # For each event asked for (verify's `anchors`) and found in the verified chain: its
    # position in the chain (1 for the first event) and its hash.
    anchors: dict[int, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.bad is None


def verify(using: str = "default", anchors: Iterable[int] = ()) -> Verification:
    """Walk the chain in id order: each row's hash must match its content in the form of its
    hash_version (never lower than the row before's), and its prev_hash the hash of the row
    before it. Stops at the first row that does not."""
    wanted = set(anchors)
    found: dict[int, tuple[int, str]] = {}
    expected_prev = GENESIS_HASH
    lowest_version = 1
    previous = None
    count = 0
    events = AuditEvent.objects.using(using).order_by("id").iterator(chunk_size=2000)
    for event in events:
        problem = _chain_problem(event, previous, expected_prev, lowest_version)
        if problem:
            return Verification(count, previous, event, problem, found)
        count += 1
        if event.pk in wanted:
            found[event.pk] = (count, event.hash)
        expected_prev = event.hash
        lowest_version = event.hash_version
        previous = event
    return Verification(count, previous, anchors=found)


def _chain_problem(event, previous, expected_prev: str, lowest_version: int) -> str:
    if event.hash_version not in HASHED_FIELDS:
        return f"its hash version {event.hash_version} is unknown"
    if event.hash_version < lowest_version:
        return (
            f"its hash version {event.hash_version} is older than the version "
            f"{lowest_version} of the events before it (a form that hashes less)"
        )
    if compute_hash(event) != event.hash:
        return "its content does not match its hash (row changed)"
    if event.prev_hash != expected_prev:
        if previous is None:
            what = "it is the first event but does not start the chain"
        else:
            what = f"its prev_hash is not the hash of event #{previous.pk}"
        return f"{what} (an event before it was removed or changed)"
    return ""
