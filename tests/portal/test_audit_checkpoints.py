"""The audit log anchored outside the database (issue 9 item 4): `verify_audit --checkpoints`.

The attacker is someone with the database's owner rights (here: the test's own connection,
with the append-only trigger switched off on PostgreSQL), who can change rows and recompute
any hash but does not hold the checkpoint key. Each of the ten tampers the issue measured
(four of which verify_audit missed) and a few more must be reported, exit code 1; an
untampered log verifies, run after run, as it grows.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from audit.log import record
from audit.models import HASH_VERSION, AuditEvent, compute_hash

pytestmark = pytest.mark.django_db

ON_POSTGRES = connection.vendor == "postgresql"
TABLE = AuditEvent._meta.db_table
TRIGGER = "portal_auditevent_append_only"
KEY = "checkpoint-key-" + "k" * 40
ROOT = Path(__file__).resolve().parents[2]


def tamper(*statements) -> None:
    """Run (sql, params) pairs behind the application's back, with the trigger off."""
    with connection.cursor() as cursor:
        if ON_POSTGRES:
            # ALTER TABLE and TRUNCATE refuse to run while foreign key checks are pending
            # (Django's are deferred): run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
        finally:
            if ON_POSTGRES:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def events() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("id"))


def write(actor, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        record(actor=actor, action="refresh", outcome="requested", message=f"event {i}")


def run_verify(path) -> str:
    call_command("verify_audit", "--checkpoints", str(path))
    return ""


def verify_fails(path) -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", "--checkpoints", str(path))
    assert failure.value.returncode == 1
    message = str(failure.value)
    assert message.startswith("TAMPERED: ")
    return message


@pytest.fixture
def key(settings):
    settings.AUDIT_CHECKPOINT_KEY = KEY
    settings.AUDIT_CHECKPOINT_KEY_FILE = ""
    return KEY


@pytest.fixture
def people(db):
    return User.objects.create_user("ada"), User.objects.create_user("eve")


@pytest.fixture
def checkpointed(key, people, tmp_path):
    """Seven events, checkpointed twice as they were written (after 5, then after 7)."""
    ada, _ = people
    path = tmp_path / "audit-checkpoints.jsonl"
    write(ada, 5)
    run_verify(path)
    write(ada, 2, start=5)
    run_verify(path)
    return path


def rehash_from(rows, start: int) -> list:
    """The statements that recompute every hash from rows[start] on, as an attacker who
    knows the (public) hash function would: the chain verifies again on its own."""
    statements = []
    prev = rows[start - 1].hash if start else rows[0].prev_hash
    for row in rows[start:]:
        row.prev_hash = prev
        row.hash = compute_hash(row)
        statements.append(
            (
                f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, row.hash, row.pk],
            )
        )
        prev = row.hash
    # prev_hash is unique: clear them first so the rewrite does not collide with itself.
    clear = [
        (f"UPDATE {TABLE} SET prev_hash = %s WHERE id = %s", [f"tmp{row.pk}", row.pk])
        for row in rows[start:]
    ]
    return clear + statements


def changed_content(rows, people):
    tamper((f"UPDATE {TABLE} SET outcome = 'succeeded' WHERE id = %s", [rows[3].pk]))


def middle_row_deleted(rows, people):
    tamper((f"DELETE FROM {TABLE} WHERE id = %s", [rows[3].pk]))


def first_row_deleted(rows, people):
    tamper((f"DELETE FROM {TABLE} WHERE id = %s", [rows[0].pk]))


def changed_and_rehashed_row(rows, people):
    row = rows[3]
    row.outcome = "succeeded"
    tamper(
        (
            f"UPDATE {TABLE} SET outcome = 'succeeded', hash = %s WHERE id = %s",
            [compute_hash(row), row.pk],
        )
    )


def two_rows_swapped(rows, people):
    a, b = rows[2].pk, rows[3].pk
    tamper(
        (f"UPDATE {TABLE} SET id = %s WHERE id = %s", [-1, a]),
        (f"UPDATE {TABLE} SET id = %s WHERE id = %s", [a, b]),
        (f"UPDATE {TABLE} SET id = %s WHERE id = %s", [b, -1]),
    )


def forged_row_inserted(rows, people):
    """A row written straight into the table, not chained by record()."""
    ada, _ = people
    forged = AuditEvent(
        id=rows[-1].pk + 1,
        at=rows[-1].at,
        actor_id=ada.pk,
        actor_name="ada",
        action="delete_pool",
        outcome="succeeded",
        parameters={},
        prev_hash="ab" * 32,
    )
    forged.hash_version = HASH_VERSION
    forged.hash = compute_hash(forged)
    # Straight into the table, past AuditEvent.save() and its chaining.
    AuditEvent.objects._insert([forged], fields=AuditEvent._meta.concrete_fields)


def last_three_deleted(rows, people):
    tamper((f"DELETE FROM {TABLE} WHERE id >= %s", [rows[-3].pk]))


def truncated(rows, people):
    tamper((f"TRUNCATE {TABLE}" if ON_POSTGRES else f"DELETE FROM {TABLE}", []))


def whole_chain_rehashed_after_an_edit(rows, people):
    rows[1].outcome = "failed"
    tamper(
        (f"UPDATE {TABLE} SET outcome = 'failed' WHERE id = %s", [rows[1].pk]),
        *rehash_from(rows, 1),
    )


def actor_changed(rows, people):
    _, eve = people
    tamper((f"UPDATE {TABLE} SET actor_id = %s WHERE id = %s", [eve.pk, rows[2].pk]))


def actor_changed_as_a_version_1_row_and_rehashed(rows, people):
    _, eve = people
    rows[2].actor_id, rows[2].hash_version = eve.pk, 1
    tamper(
        (f"UPDATE {TABLE} SET actor_id = %s, hash_version = 1 WHERE id = %s", [eve.pk, rows[2].pk]),
        *rehash_from(rows, 2),
    )


def replaced_by_a_fresh_chain(rows, people):
    """All of it erased and as many events written again through the application."""
    truncated(rows, people)
    ada, _ = people
    write(ada, len(rows) + 1)


TAMPERS = {
    # The six the chain already showed.
    changed_content: "does not match its hash",
    middle_row_deleted: "its prev_hash is not the hash of event",
    first_row_deleted: "does not start the chain",
    changed_and_rehashed_row: "its prev_hash is not the hash of event",
    two_rows_swapped: "TAMPERED: event #",
    forged_row_inserted: "its prev_hash is not the hash of event",
    # The four verify_audit missed (issue 9 item 4).
    last_three_deleted: "the log holds 4 events, fewer than the 7 of the checkpoint",
    truncated: "the log holds 0 events, fewer than the 7 of the checkpoint",
    whole_chain_rehashed_after_an_edit: "no longer has the hash it had at the checkpoint",
    actor_changed: "does not match its hash",
    # And more of the same kind.
    actor_changed_as_a_version_1_row_and_rehashed: "older than the version 2",
    replaced_by_a_fresh_chain: "the log was rewritten",
}


@pytest.mark.parametrize("attack", list(TAMPERS), ids=lambda f: f.__name__)
def test_each_tamper_is_reported(checkpointed, people, attack):
    attack(events(), people)
    message = verify_fails(checkpointed)
    assert TAMPERS[attack] in message
    # Nothing is checkpointed over a tampered log.
    assert len(checkpointed.read_text().splitlines()) == 2


def test_an_untampered_log_verifies_run_after_run_as_it_grows(key, people, tmp_path, capsys):
    ada, _ = people
    path = tmp_path / "checkpoints"
    call_command("verify_audit", "--checkpoints", str(path))  # empty log, no file yet
    for n in (3, 1, 0, 4):
        write(ada, n)
        call_command("verify_audit", "--checkpoints", str(path))
    out = capsys.readouterr().out
    assert "OK: 8 events verified" in out
    assert "Matches the 4 earlier checkpoints" in out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["count"] for line in lines] == [0, 3, 4, 4, 8]
    last = AuditEvent.objects.order_by("-id").first()
    assert (lines[-1]["last_id"], lines[-1]["last_hash"]) == (last.pk, last.hash)
    assert lines[0]["last_id"] is None
    assert all(len(line["sig"]) == 64 and line["at"] for line in lines)


def test_tampering_after_the_last_checkpoint_is_only_caught_by_the_chain(checkpointed, people):
    """What was never checkpointed can only be vouched for by the chain: removing events
    written since the last run goes unseen, so run verify_audit often."""
    ada, _ = people
    write(ada, 2, start=7)
    tamper((f"DELETE FROM {TABLE} WHERE id > %s", [events()[6].pk]))
    run_verify(checkpointed)


def forged_count(lines):
    data = json.loads(lines[-1])
    data["count"] = 3
    lines[-1] = json.dumps(data)


def signed_with_another_key(lines):
    import hashlib
    import hmac

    data = json.loads(lines[-1])
    data["count"] = 3
    del data["sig"]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    data["sig"] = hmac.new(b"x" * 40, text.encode(), hashlib.sha256).hexdigest()
    lines.append(json.dumps(data))


def not_a_checkpoint(lines):
    lines.insert(0, "{not json")


@pytest.mark.parametrize("forge", [forged_count, signed_with_another_key, not_a_checkpoint])
def test_a_forged_checkpoint_is_reported_as_such(checkpointed, forge):
    lines = checkpointed.read_text().splitlines()
    forge(lines)
    checkpointed.write_text("\n".join(lines) + "\n")
    message = verify_fails(checkpointed)
    assert "is not a checkpoint signed with the checkpoint key" in message


def test_a_forged_checkpoint_does_not_hide_a_truncated_tail(checkpointed):
    """Cutting the tail and writing a checkpoint that says the log was shorter: both show."""
    rows = events()
    last_three_deleted(rows, None)
    lines = checkpointed.read_text().splitlines()
    forged_count(lines)
    checkpointed.write_text("\n".join(lines) + "\n")
    message = verify_fails(checkpointed)
    assert "line 2 of" in message and "fewer than the 5 of the checkpoint" in message


def test_the_key_can_come_from_a_file(settings, people, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    settings.AUDIT_CHECKPOINT_KEY, settings.AUDIT_CHECKPOINT_KEY_FILE = "", str(key_file)
    path = tmp_path / "checkpoints"
    write(people[0], 2)
    run_verify(path)
    # The same key given directly accepts the checkpoint; another one does not.
    settings.AUDIT_CHECKPOINT_KEY, settings.AUDIT_CHECKPOINT_KEY_FILE = KEY, ""
    run_verify(path)
    settings.AUDIT_CHECKPOINT_KEY = "another-key-" + "y" * 40
    assert "not a checkpoint signed" in verify_fails(path)


@pytest.mark.parametrize("problem", ["no key", "short key file", "missing key file"])
def test_checkpoints_without_a_usable_key_are_refused(settings, tmp_path, problem):
    settings.AUDIT_CHECKPOINT_KEY = ""
    settings.AUDIT_CHECKPOINT_KEY_FILE = {
        "no key": "",
        "short key file": str(tmp_path / "short"),
        "missing key file": str(tmp_path / "absent"),
    }[problem]
    (tmp_path / "short").write_text("too short\n")
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", "--checkpoints", str(tmp_path / "checkpoints"))
    assert failure.value.returncode == 2
    assert "AUDIT_CHECKPOINT_KEY" in str(failure.value)
    assert not (tmp_path / "checkpoints").exists()


def test_the_checkpoint_file_defaults_to_audit_checkpoint_file(key, settings, tmp_path, capsys):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "from-settings")
    call_command("verify_audit")
    assert json.loads((tmp_path / "from-settings").read_text())["count"] == 0
    assert "checkpoint appended" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"AUDIT_CHECKPOINT_KEY": "short"}, "AUDIT_CHECKPOINT_KEY: must be at least 32"),
        (
            {"AUDIT_CHECKPOINT_KEY": KEY, "AUDIT_CHECKPOINT_KEY_FILE": "/k"},
            "AUDIT_CHECKPOINT_KEY: set either",
        ),
    ],
)
def test_a_bad_checkpoint_key_setting_stops_the_portal_at_start(tmp_path, env, error):
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "PORTAL_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert error in result.stderr
