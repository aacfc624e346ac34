"""System checks for deployment (`manage.py check --deploy`, `make check-deploy`).

The audit log is append-only only if the role the portal connects as cannot undo it: on
PostgreSQL that role must not own the audit table (an owner can TRUNCATE it, or disable or
drop its trigger), nor hold UPDATE, DELETE, TRUNCATE or TRIGGER on it, and the trigger must
be there and enabled. SQLite has no roles: nothing to check there.
"""

from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from audit.models import AuditEvent

TRIGGER = "portal_auditevent_append_only"  # migrations 0003 and 0004

HINT = (
    "Run migrations as an owner role and the portal as a runtime role granted with "
    "`manage.py grant_runtime_role ROLE` (README, Roles and the audit log)."
)

_QUERY = """
SELECT current_user,
       r.rolsuper,
       pg_get_userbyid(c.relowner),
       pg_has_role(current_user, c.relowner, 'MEMBER'),
       has_any_column_privilege(c.oid, 'UPDATE'),
       has_table_privilege(c.oid, 'DELETE'),
       has_table_privilege(c.oid, 'TRUNCATE'),
       has_table_privilege(c.oid, 'TRIGGER'),
       EXISTS (
           SELECT 1 FROM pg_proc p
           WHERE p.proname = %(trigger)s AND pg_has_role(current_user, p.proowner, 'MEMBER')
       ),
       (SELECT t.tgenabled FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = %(trigger)s)
FROM pg_class c
JOIN pg_roles r ON r.rolname = current_user
WHERE c.oid = to_regclass(%(table)s)
"""


@checks.register(checks.Tags.security, deploy=True)
def audit_log_protection(app_configs=None, **kwargs):
    return audit_role_messages(connections[DEFAULT_DB_ALIAS])


def audit_role_messages(connection) -> list[checks.CheckMessage]:
    """What is wrong with the audit table's protection for the role `connection` uses."""
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                _QUERY, {"trigger": TRIGGER, "table": connection.ops.quote_name(_table())}
            )
            row = cursor.fetchone()
    except DatabaseError as exc:
        return [
            checks.Info(
                f"Could not check the database role's rights on the audit log: {exc}",
                id="portal.I001",
            )
        ]
    if row is None:
        return []  # not migrated yet
    user, superuser, owner, owns, *privileges, owns_function, trigger = row
    rights = []
    if superuser:
        rights.append("is a superuser")
    elif owns:
        rights.append(
            f"owns the audit table (through role {owner})"
            if owner != user
            else "owns the audit table"
        )
    if not superuser:
        held = [
            name
            for name, has in zip(
                ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER"), privileges, strict=True
            )
            if has
        ]
        if held and not owns:
            rights.append(f"holds {', '.join(held)} on the audit table")
        if owns_function:
            rights.append(f"owns the trigger function {TRIGGER}()")
    messages = []
    if rights:
        messages.append(
            checks.Warning(
                f'The database role "{user}" the portal connects as can rewrite or erase the '
                f"audit log: it {' and '.join(rights)}.",
                hint=HINT,
                id="portal.W001",
            )
        )
    if trigger not in ("O", "A"):  # fires in origin mode (O) or always (A)
        state = "missing" if trigger is None else "disabled"
        messages.append(
            checks.Warning(
                f"The audit table's append-only trigger {TRIGGER} is {state}.",
                hint="Run `manage.py migrate` as the owner role; ALTER TABLE ... ENABLE "
                "TRIGGER if someone disabled it.",
                id="portal.W002",
            )
        )
    return messages


def _table() -> str:
    return AuditEvent._meta.db_table
