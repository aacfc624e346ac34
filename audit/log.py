"""Writing the audit log. Call `record()` inside the transaction of the change it records.

Each event is chained onto the newest one (see portal/models.py). On PostgreSQL the chain's
lock is held until the caller's transaction ends, so call record() last in a transaction,
after any row locks it takes: a transaction that records and then waits for a row lock can
deadlock with one holding that row and waiting to record.

Checking it: verify() walks the chain; the signed checkpoints below anchor it outside the
database (`manage.py verify_audit --checkpoints FILE`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.actors import role_of
from audit.models import GENESIS_HASH, HASHED_FIELDS, AuditEvent, compute_hash

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
            parameters=_with_api_token(parameters, request),
            operation=operation,
            request_id=getattr(request, "request_id", "") if request is not None else "",
            ip=_client_ip(request),
        )
        # save() takes the chain's lock, reads the newest hash and sets prev_hash and hash.
        event.save()
    return event


def record_denial(
    *,
    actor,
    action: str,
    message: str,
    target: Any = None,
    operation=None,
    parameters: dict | None = None,
    request=None,
) -> PermissionDenied:
    """Record that the actor was refused, in a transaction of its own (the refused request's
    own work is rolled back, its denial is not), and return the PermissionDenied to raise,
    which tells the user `message`."""
    with transaction.atomic():
        record(
            actor=actor,
            action=action,
            outcome=Outcome.DENIED,
            target=target,
            operation=operation,
            parameters=parameters,
            request=request,
        )
    return PermissionDenied(message)


def _with_api_token(parameters: dict | None, request) -> dict:
    """The parameters, naming the API token the request was made with, if any: the API's
    authentication puts it on the request (portal/api/authentication.py). Read generically,
    as this app knows nothing of the portal: any object whose str() names it."""
    parameters = dict(parameters or {})
    token = getattr(request, "api_token", None) if request is not None else None
    if token is not None:
        parameters["api_token"] = str(token)
    return parameters


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


# Checkpoints: the chain alone cannot show events removed from its end (or all of them), nor a
# chain recomputed from scratch after an edit, since anyone can compute sha256. So each run of
# verify_audit writes down where the verified log ended (newest id, its hash, how many events)
# signed with HMAC-SHA256 under a key the database does not hold, and later runs check the
# log still holds that event, with that hash, at that position. See README, "Roles and the
# audit log".

CHECKPOINT_FORMAT = 1
MIN_KEY_LENGTH = 32


class CheckpointError(Exception):
    """A checkpoint file that cannot be trusted: a line not signed with the key."""


def checkpoint_key() -> bytes:
    """The signing key: AUDIT_CHECKPOINT_KEY, or the file AUDIT_CHECKPOINT_KEY_FILE names
    (read now, so only the process that verifies needs to be able to read it)."""
    if settings.AUDIT_CHECKPOINT_KEY:
        return settings.AUDIT_CHECKPOINT_KEY.encode()
    path = settings.AUDIT_CHECKPOINT_KEY_FILE
    if not path:
        raise ImproperlyConfigured(
            "AUDIT_CHECKPOINT_KEY or AUDIT_CHECKPOINT_KEY_FILE: a key is needed to sign and "
            "check audit checkpoints"
        )
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"AUDIT_CHECKPOINT_KEY_FILE: cannot read {path}: {exc}"
        ) from None
    if len(key) < MIN_KEY_LENGTH:
        raise ImproperlyConfigured(
            f"AUDIT_CHECKPOINT_KEY_FILE: the key in {path} must be at least "
            f"{MIN_KEY_LENGTH} characters long"
        )
    return key.encode()


@dataclass(frozen=True)
class Checkpoint:
    at: str  # when it was taken (ISO 8601)
    count: int  # events in the verified chain
    last_id: int | None  # the newest of them (None: the log was empty)
    last_hash: str  # its hash (GENESIS_HASH for an empty log)
    line: int = 0  # where it is in its file

    def content(self) -> dict:
        return {
            "v": CHECKPOINT_FORMAT,
            "at": self.at,
            "count": self.count,
            "last_id": self.last_id,
            "last_hash": self.last_hash,
        }

    def signed_line(self, key: bytes) -> str:
        return json.dumps({**self.content(), "sig": _sign(self.content(), key)}, sort_keys=True)

    def describe(self) -> str:
        return f"the checkpoint taken at {self.at} (line {self.line})"


def _sign(content: dict, key: bytes) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def checkpoint_of(result: Verification) -> Checkpoint:
    """Where a verified log ends, now."""
    last = result.last
    return Checkpoint(
        at=timezone.now().isoformat(timespec="seconds"),
        count=result.count,
        last_id=last.pk if last is not None else None,
        last_hash=last.hash if last is not None else GENESIS_HASH,
    )


def read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints in the file whose signature holds, and a problem for each line that
    is not one (a missing file is an empty one: no checkpoint yet)."""
    checkpoints, problems = [], []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            signature = data.pop("sig")
            checkpoint = Checkpoint(
                at=data["at"],
                count=data["count"],
                last_id=data["last_id"],
                last_hash=data["last_hash"],
                line=number,
            )
            valid = data == checkpoint.content() and hmac.compare_digest(
                str(signature), _sign(data, key)
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if valid:
            checkpoints.append(checkpoint)
        else:
            problems.append(
                f"line {number} of {path} is not a checkpoint signed with the checkpoint key "
                "(forged, changed, or signed with another key)"
            )
    return checkpoints, problems


def check_checkpoint(result: Verification, checkpoint: Checkpoint) -> str:
    """What is wrong with a verified chain against an earlier checkpoint ("" if nothing)."""
    if result.count < checkpoint.count:
        return (
            f"the log holds {result.count} events, fewer than the {checkpoint.count} of "
            f"{checkpoint.describe()}: events were removed (from its end, or all of them)"
        )
    if checkpoint.last_id is None:
        return ""
    if checkpoint.last_id not in result.anchors:
        return (
            f"event #{checkpoint.last_id}, the newest at {checkpoint.describe()}, is no longer "
            "in the chain: the log was rewritten"
        )
    position, current_hash = result.anchors[checkpoint.last_id]
    if current_hash != checkpoint.last_hash:
        return (
            f"event #{checkpoint.last_id} no longer has the hash it had at "
            f"{checkpoint.describe()}: the chain was rewritten"
        )
    if position != checkpoint.count:
        return (
            f"event #{checkpoint.last_id} is event {position} of the chain but was event "
            f"{checkpoint.count} at {checkpoint.describe()}: events before it were removed "
            "or added"
        )
    return ""


def append_checkpoint(path: Path, checkpoint: Checkpoint, key: bytes) -> str:
    line = checkpoint.signed_line(key)
    with path.open("a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())
    return line
