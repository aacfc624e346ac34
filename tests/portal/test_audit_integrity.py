"""Audit log integrity: the hash chain, `verify_audit`, and PostgreSQL's append-only trigger.

Every test runs on whichever database the suite uses (SQLite by default, PostgreSQL with
DATABASE_URL); the trigger test only on PostgreSQL, where the trigger exists.
"""

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import ProtectedError
from django.utils import timezone

from audit.log import record, verify
from audit.models import GENESIS_HASH, HASH_VERSION, HASHED_FIELDS, AuditEvent, compute_hash
from composer.models import Operation

pytestmark = pytest.mark.django_db

ON_POSTGRES = connection.vendor == "postgresql"
postgres_only = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="the append-only trigger is PostgreSQL only; on SQLite the hash chain alone "
    "shows changes (set DATABASE_URL=postgres://... to run it)",
)
TABLE = AuditEvent._meta.db_table
TRIGGER = "portal_auditevent_append_only"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada")


def write_events(actor, n: int) -> list[AuditEvent]:
    return [
        record(actor=actor, action="refresh", outcome="requested", message=f"event {i}")
        for i in range(n)
    ]


def tamper(sql: str, params=()) -> None:
    """Change rows behind the application's back, as someone with the table owner's rights
    could: on PostgreSQL that means switching the trigger off first."""
    with connection.cursor() as cursor:
        if ON_POSTGRES:
            # ALTER TABLE refuses to run while the test's transaction has foreign key checks
            # pending (Django's are deferred): run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
        try:
            cursor.execute(sql, params)
        finally:
            if ON_POSTGRES:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def verify_fails_at(event_id: int) -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 1
    message = str(failure.value)
    assert message.startswith(f"TAMPERED: event #{event_id} ")
    return message


def test_each_event_chains_onto_the_one_before(ada):
    events = write_events(ada, 3)
    assert events[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    for event in AuditEvent.objects.order_by("id"):
        assert len(event.hash) == 64 and event.hash == compute_hash(event)
    assert len({e.hash for e in events}) == 3


def test_verify_audit_passes_on_an_untouched_log(ada, capsys):
    write_events(ada, 5)
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "OK: 5 events verified" in out
    last = AuditEvent.objects.order_by("-id").first()
    assert f"Last event #{last.pk}, hash {last.hash}" in out


def test_verify_audit_passes_on_an_empty_log(db, capsys):
    call_command("verify_audit")
    assert "OK: 0 events verified" in capsys.readouterr().out


@pytest.mark.parametrize(
    "values",
    [
        {"ip": "::ffff:10.1.2.3"},  # PostgreSQL's inet gives back its own IPv6 spelling
        {"ip": "2001:0DB8:0000::0001"},
        {"ip": "192.168.0.7"},
        {"parameters": {"big": 1e16, "half": 0.5, "tiny": 1e-7, "whole": 3.0, "neg": -2.0}},
        {"parameters": {"tuple": (1, 2), "nested": {"b": [None, True], "a": "é ü 漢"}}},
        {"parameters": {1: "int key", "z": 1, "a": 2}},
        {"message": 'line one\nline two\t"quoted" \\ back', "target_name": "ENG-001 "},
        {"outcome": AuditEvent.Outcome.DENIED, "target_id": 42},
        {"at": timezone.now().replace(microsecond=123456) - timedelta(days=400)},
    ],
)
def test_the_hash_survives_the_round_trip_through_the_database(ada, values):
    fields = {"actor_name": "ada", "action": "refresh", "outcome": "requested", **values}
    event = AuditEvent.objects.create(**fields)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.hash == event.hash == compute_hash(stored)
    assert verify().ok


def test_verify_audit_reports_a_changed_row(ada):
    events = write_events(ada, 5)
    tamper(f"UPDATE {TABLE} SET outcome = %s WHERE id = %s", ["succeeded", events[2].pk])
    message = verify_fails_at(events[2].pk)
    assert "does not match its hash" in message
    assert "2 events before it verified" in message


def test_verify_audit_reports_the_row_after_a_removed_one(ada):
    events = write_events(ada, 5)
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [events[2].pk])
    message = verify_fails_at(events[3].pk)
    assert f"its prev_hash is not the hash of event #{events[1].pk}" in message
    assert "removed or changed" in message


def test_verify_audit_reports_a_removed_first_row(ada):
    events = write_events(ada, 3)
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [events[0].pk])
    assert "does not start the chain" in verify_fails_at(events[1].pk)


def test_a_changed_row_given_a_fresh_hash_still_breaks_the_chain(ada):
    events = write_events(ada, 4)
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.outcome = "succeeded"
    tamper(
        f"UPDATE {TABLE} SET outcome = %s, hash = %s WHERE id = %s",
        ["succeeded", compute_hash(forged), forged.pk],
    )
    verify_fails_at(events[2].pk)


@postgres_only
def test_postgres_refuses_update_and_delete_of_audit_rows(ada):
    event = record(actor=ada, action="refresh", outcome="requested")
    with connection.cursor() as cursor:
        for sql in (
            f"UPDATE {TABLE} SET outcome = 'succeeded' WHERE id = %s",
            f"UPDATE {TABLE} SET actor_name = 'someone else', actor_id = NULL WHERE id = %s",
            # Migration 0003's trigger let this one through; actor_id is hashed now.
            f"UPDATE {TABLE} SET actor_id = NULL WHERE id = %s",
            f"DELETE FROM {TABLE} WHERE id = %s",
        ):
            with pytest.raises(DatabaseError, match="audit events are append-only"):
                with transaction.atomic():
                    cursor.execute(sql, [event.pk])
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.outcome, stored.actor_name) == ("requested", "ada")


def test_the_orm_refuses_bulk_changes_on_every_database(ada):
    write_events(ada, 2)
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(outcome="succeeded")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.bulk_create([AuditEvent(actor_name="x", action="y", outcome="failed")])
    assert verify().count == 2


def test_deleting_a_user_keeps_their_events_and_the_chain(ada):
    """actor_id is hashed, so deleting the user leaves it as it was (no foreign key, nothing
    done on delete); ids are never given to another user."""
    write_events(ada, 3)
    ada_id = ada.pk
    ada.delete()
    assert list(AuditEvent.objects.order_by().values_list("actor_id", "actor_name").distinct()) == [
        (ada_id, "ada")
    ]
    assert verify().ok
    assert User.objects.create_user("bob").pk != ada_id
    assert verify().ok


def test_every_column_is_hashed():
    """Version 2 covers every column but the hash itself; a column added later must be
    hashed too (in a new version) before this passes."""
    columns = {f.attname for f in AuditEvent._meta.concrete_fields}
    assert columns == {*HASHED_FIELDS[HASH_VERSION], "prev_hash", "hash_version", "hash"}
    assert {"id", "actor_id"} <= set(HASHED_FIELDS[HASH_VERSION])


def test_changing_any_column_changes_the_hash(ada):
    other = User.objects.create_user("eve")
    operation = Operation.objects.create(kind="refresh", pool_name="P", requested_by=ada)
    event = record(actor=ada, action="refresh", outcome="requested", operation=operation)
    event = AuditEvent.objects.get(pk=event.pk)
    assert event.hash_version == HASH_VERSION and event.verify()
    changes = {
        "id": event.pk + 1,
        "at": event.at - timedelta(seconds=1),
        "actor_id": other.pk,
        "actor_name": "eve",
        "role": "Auditors",
        "action": "recompose",
        "target_type": "pool",
        "target_id": "7",
        "target_name": "Other",
        "outcome": "succeeded",
        "message": "changed",
        "parameters": {"x": 1},
        "operation_id": None,
        "request_id": "r-2",
        "ip": "10.0.0.9",
        "prev_hash": "f" * 64,
        "hash_version": 1,
    }
    assert set(changes) == {f.attname for f in AuditEvent._meta.concrete_fields} - {"hash"}
    for name, value in changes.items():
        changed = AuditEvent.objects.get(pk=event.pk)
        setattr(changed, name, value)
        assert compute_hash(changed) != event.hash, name


def test_verify_audit_reports_a_changed_actor(ada):
    """issue 9 item 4: actor_id was not hashed, so pinning an event on someone else went
    unnoticed."""
    eve = User.objects.create_user("eve")
    events = write_events(ada, 3)
    tamper(f"UPDATE {TABLE} SET actor_id = %s WHERE id = %s", [eve.pk, events[1].pk])
    assert "does not match its hash" in verify_fails_at(events[1].pk)


def test_ids_follow_the_chain_and_are_hashed(ada):
    events = write_events(ada, 3)
    assert [e.pk for e in events] == sorted(e.pk for e in events)
    # Renumbering a row, even to an unused id, breaks its hash.
    tamper(f"UPDATE {TABLE} SET id = %s WHERE id = %s", [events[-1].pk + 100, events[-1].pk])
    verify_fails_at(events[-1].pk + 100)


def test_a_row_passed_off_as_an_older_hash_version_is_reported(ada):
    """Version 1 does not cover actor_id: a row rehashed as version 1 after version 2 rows
    would let its actor change. verify refuses a version lower than the row before's."""
    eve = User.objects.create_user("eve")
    events = write_events(ada, 3)
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.hash_version, forged.actor_id = 1, eve.pk
    tamper(
        f"UPDATE {TABLE} SET hash_version = 1, actor_id = %s, hash = %s WHERE id = %s",
        [eve.pk, compute_hash(forged), forged.pk],
    )
    assert "older than the version 2" in verify_fails_at(events[1].pk)


def test_an_audited_operation_cannot_be_deleted(ada):
    operation = Operation.objects.create(kind="refresh", pool_name="Gone", requested_by=ada)
    record(actor=ada, action="refresh", outcome="requested", operation=operation)
    with pytest.raises(ProtectedError):
        operation.delete()
    assert verify().ok


def test_many_appends_and_appends_inside_outer_transactions_keep_the_chain(ada):
    write_events(ada, 120)
    with transaction.atomic():
        record(actor=ada, action="create_pool", outcome="requested")
        try:
            with transaction.atomic():
                record(actor=ada, action="create_pool", outcome="succeeded")
                raise RuntimeError("the change failed, so its event goes too")
        except RuntimeError:
            pass
        record(actor=ada, action="create_pool", outcome="failed")
    result = verify()
    assert result.ok and result.count == 122
    assert not AuditEvent.objects.filter(outcome="succeeded").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_chain_onto_the_same_row():
    """Four threads, each with its own database connection, append at once. Without the
    chain's lock two of them would read the same head and one would fail on the unique
    prev_hash; with it every append lands and the chain verifies."""
    actor = User.objects.create_user("ada")
    errors = []
    start = threading.Barrier(4)

    def writer(n):
        try:
            start.wait()
            for i in range(15):
                record(actor=actor, action="refresh", outcome="requested", message=f"{n}-{i}")
        except Exception as exc:  # reported below: an assert in a thread would be lost
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = verify()
    assert result.ok and result.count == 60


def _database_url() -> str:
    settings = connection.settings_dict
    if ON_POSTGRES:
        user, host = settings["USER"], settings["HOST"] or "127.0.0.1"
        password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
        return f"postgres://{user}{password}@{host}:{settings['PORT'] or 5432}/{settings['NAME']}"
    return f"sqlite:///{settings['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_verify_audit_exits_1_naming_the_tampered_row(tmp_path):
    """The real command line, on the test database: exit code 0, then 1 after tampering."""
    actor = User.objects.create_user("ada")
    events = write_events(actor, 4)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PORTAL_DATA_DIR": str(tmp_path),
        "DEBUG": "true",
    }

    def run():
        return subprocess.run(
            [sys.executable, "manage.py", "verify_audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = run()
    assert good.returncode == 0, good.stderr
    assert "OK: 4 events verified" in good.stdout
    tamper(f"UPDATE {TABLE} SET message = %s WHERE id = %s", ["nothing to see", events[1].pk])
    bad = run()
    assert bad.returncode == 1
    assert f"TAMPERED: event #{events[1].pk} " in bad.stderr


@pytest.mark.django_db(transaction=True)
def test_upgrading_chains_the_events_already_there():
    """Migration 0003 hashes the rows written before it, in id order, so an upgraded
    database verifies; and it can be reversed."""
    actor = User.objects.create_user("ada")
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([("portal", "0002_audit_outcomes")])
        old_apps = executor.loader.project_state([("portal", "0002_audit_outcomes")]).apps
        OldEvent = old_apps.get_model("portal", "AuditEvent")
        base = timezone.now() - timedelta(days=2)
        for i, (outcome, parameters) in enumerate(
            [("requested", {"desktops": 3}), ("succeeded", {"ratio": 2.0}), ("denied", {})]
        ):
            OldEvent.objects.create(
                at=base + timedelta(hours=i),
                actor_id=actor.pk,
                actor_name="ada",
                action="refresh",
                outcome=outcome,
                parameters=parameters,
                ip="::ffff:10.0.0.1",
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    result = verify()
    assert result.ok and result.count == 3
    first = AuditEvent.objects.order_by("id").first()
    assert first.prev_hash == GENESIS_HASH
    record(actor=None, action="refresh", outcome="denied")
    assert verify().count == 4


@pytest.mark.django_db(transaction=True)
def test_events_hashed_before_0004_keep_verifying_as_version_1():
    """A database deployed at 0003 holds rows hashed without id and actor_id (with the
    trigger in place on PostgreSQL). Migration 0004 marks them version 1 without touching
    them; they verify in that form, and new rows chain onto them as version 2."""
    actor = User.objects.create_user("ada")
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([("portal", "0003_audit_integrity")])
        old_apps = executor.loader.project_state([("portal", "0003_audit_integrity")]).apps
        OldEvent = old_apps.get_model("portal", "AuditEvent")
        prev_hash = GENESIS_HASH
        for i, outcome in enumerate(["requested", "succeeded", "denied"]):
            # What save() did at 0003: chain onto the head, hash the version 1 form.
            event = OldEvent(
                at=timezone.now().replace(microsecond=0) - timedelta(hours=3 - i),
                actor_id=actor.pk,
                actor_name="ada",
                action="refresh",
                outcome=outcome,
                parameters={"n": i},
                ip="10.0.0.1",
                prev_hash=prev_hash,
            )
            event.hash = compute_hash(event)
            event.save()
            prev_hash = event.hash
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    old = list(AuditEvent.objects.order_by("id"))
    assert [e.hash_version for e in old] == [1, 1, 1]
    assert verify().ok
    new = record(actor=actor, action="refresh", outcome="requested")
    assert new.hash_version == HASH_VERSION == 2 and new.prev_hash == old[-1].hash
    result = verify()
    assert result.ok and result.count == 4
