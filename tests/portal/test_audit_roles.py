"""The audit log against the database role the portal runs as (issue 9 item 4).

On PostgreSQL the portal runs as a runtime role granted by `manage.py grant_runtime_role`:
it appends through record() and reads, but cannot TRUNCATE, UPDATE or DELETE audit rows,
nor disable, drop or replace the trigger. `check --deploy` warns when the role it connects
as could. Each test makes its own uniquely named roles and drops them; the server itself is
never reconfigured. SQLite has no roles: there the check stays silent.
"""

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections

from audit.log import record, verify
from audit.models import AuditEvent
from portal.checks import TRIGGER, audit_log_protection, audit_role_messages

ON_POSTGRES = connection.vendor == "postgresql"
postgres_only = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="database roles are PostgreSQL's (set DATABASE_URL=postgres://... to run it)",
)
TABLE = AuditEvent._meta.db_table
ROOT = Path(__file__).resolve().parents[2]


def execute(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def make_role(transactional_db):
    """Create LOGIN roles with unique names; drop them (and what was granted to them) after."""
    made = []

    def make(prefix: str = "audit_rt") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        execute(f"CREATE ROLE {name} LOGIN")
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        execute(f"DROP OWNED BY {name}")
        execute(f"DROP ROLE {name}")


def psycopg_as(role: str) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        dbname=settings["NAME"],
        user=role,
        autocommit=True,
    )


@contextmanager
def portal_as(role: str):
    """Make the portal's own database connection (the default alias) log in as `role`."""
    original = connections[DEFAULT_DB_ALIAS]
    settings = {**deepcopy(original.settings_dict), "USER": role, "PASSWORD": ""}
    wrapper = type(original)(settings, alias=DEFAULT_DB_ALIAS)
    connections[DEFAULT_DB_ALIAS] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        connections[DEFAULT_DB_ALIAS] = original


def warning_ids(messages) -> list[str]:
    return [m.id for m in messages]


@postgres_only
def test_the_runtime_role_can_append_and_read_but_not_undo(make_role):
    ada = User.objects.create_user("ada")
    first = record(actor=ada, action="refresh", outcome="requested")
    role = make_role()
    call_command("grant_runtime_role", role)

    with psycopg_as(role) as attacker:
        for sql in (
            f"TRUNCATE {TABLE}",
            f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}",
            f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL",
            f"DROP TRIGGER {TRIGGER} ON {TABLE}",
            f"UPDATE {TABLE} SET outcome = 'succeeded' WHERE id = {first.pk}",
            f"UPDATE {TABLE} SET actor_id = NULL WHERE id = {first.pk}",
            f"DELETE FROM {TABLE} WHERE id = {first.pk}",
            f"DROP TABLE {TABLE}",
            f"ALTER TABLE {TABLE} OWNER TO {role}",
            f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END; $$",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                attacker.execute(sql)
        assert attacker.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (1,)

    with portal_as(role) as runtime:
        # The application's own path: chain lock, id from the sequence, INSERT, all as role.
        second = record(actor=ada, action="refresh", outcome="succeeded")
        assert runtime.settings_dict["USER"] == role
        with runtime.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone() == (role,)
        result = verify()
        assert result.ok and result.count == 2 and result.last.pk == second.pk
        call_command("verify_audit")
        # Everything else stays writable.
        User.objects.filter(pk=ada.pk).update(first_name="Ada")
        assert audit_role_messages(runtime) == []

    assert AuditEvent.objects.get(pk=first.pk).outcome == "requested"


@postgres_only
def test_the_deploy_check_warns_for_an_owner_and_extra_privileges(make_role):
    # The test's own connection is a superuser: it could do anything.
    messages = audit_log_protection()
    assert warning_ids(messages) == ["portal.W001"]
    assert "is a superuser" in messages[0].msg

    runtime = make_role()
    call_command("grant_runtime_role", runtime)
    with portal_as(runtime) as wrapper:
        assert audit_role_messages(wrapper) == []
    execute(f"GRANT UPDATE (outcome), TRUNCATE ON {TABLE} TO {runtime}")
    with portal_as(runtime) as wrapper:
        [warning] = audit_role_messages(wrapper)
    assert warning.id == "portal.W001"
    assert "holds UPDATE, TRUNCATE on the audit table" in warning.msg

    # The role that ran the migrations owns the table: the portal must not run as it.
    owner = make_role("audit_owner")
    execute(f"ALTER TABLE {TABLE} OWNER TO {owner}")
    try:
        with portal_as(owner) as wrapper:
            [warning] = audit_role_messages(wrapper)
        assert warning.id == "portal.W001" and "owns the audit table" in warning.msg
        # Nor as a member of the owner's role.
        member = make_role("audit_member")
        execute(f"GRANT {owner} TO {member}")
        with portal_as(member) as wrapper:
            [warning] = audit_role_messages(wrapper)
        assert f"owns the audit table (through role {owner})" in warning.msg
        with pytest.raises(CommandError, match="audit table's owner") as refused:
            call_command("grant_runtime_role", member)
        assert refused.value.returncode == 2
    finally:
        execute(f"ALTER TABLE {TABLE} OWNER TO {connection.settings_dict['USER']}")


@postgres_only
def test_the_deploy_check_warns_when_the_trigger_is_disabled(db):
    execute("SET CONSTRAINTS ALL IMMEDIATE")
    execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
    assert "portal.W002" in warning_ids(audit_log_protection())


@postgres_only
def test_grant_refuses_a_superuser_and_an_unknown_role(db):
    with pytest.raises(CommandError, match="superuser") as refused:
        call_command("grant_runtime_role", connection.settings_dict["USER"])
    assert refused.value.returncode == 2
    with pytest.raises(CommandError, match="No role"):
        call_command("grant_runtime_role", f"nobody_{uuid.uuid4().hex[:12]}")


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite only")
def test_on_sqlite_there_is_no_role_to_check_or_grant(db):
    assert audit_log_protection() == []
    with pytest.raises(CommandError, match="PostgreSQL only") as refused:
        call_command("grant_runtime_role", "portal")
    assert refused.value.returncode == 2


def _database_url() -> str:
    settings = connection.settings_dict
    if ON_POSTGRES:
        host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
        return f"postgres://{settings['USER']}@{host}:{port}/{settings['NAME']}"
    return f"sqlite:///{settings['NAME']}"


def test_check_deploy_shows_it_on_postgres_and_stays_quiet_on_sqlite(db, tmp_path):
    """`make check-deploy` (CI runs it on SQLite with --fail-level WARNING) must pass there;
    on PostgreSQL, connected as the superuser the tests use, it warns."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PORTAL_DATA_DIR": str(tmp_path),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "portal.example",
        "SECRET_KEY": "s" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    if ON_POSTGRES:
        assert result.returncode == 1 and "portal.W001" in output, output
        assert "is a superuser" in output
    else:
        assert result.returncode == 0, output
        assert "portal.W" not in output
