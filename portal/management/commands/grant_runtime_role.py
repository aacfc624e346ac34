"""Give the role the portal runs as its privileges: `manage.py grant_runtime_role ROLE`.

PostgreSQL only. Run it as the owner role, the one that ran `manage.py migrate` (and again
after every migrate, so new tables are granted too):

    DATABASE_URL=postgres://portal_owner@db/portal manage.py migrate
    DATABASE_URL=postgres://portal_owner@db/portal manage.py grant_runtime_role portal

ROLE then gets SELECT, INSERT, UPDATE and DELETE on every table of the schema, USAGE on its
sequences, and on the audit table only SELECT and INSERT: it cannot UPDATE, DELETE or
TRUNCATE audit events, and, not owning the table, cannot disable or drop the append-only
trigger. A superuser, or a member of the table owner's role, would bypass all of that: it is
refused. `manage.py check --deploy` warns when the portal's role can still change the log.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from audit.models import AuditEvent


class Command(BaseCommand):
    help = "Grant ROLE what the portal needs, and on the audit table only SELECT and INSERT."

    def add_arguments(self, parser):
        parser.add_argument("role", help="The role the portal (web and workers) connects as.")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )

    def handle(self, *args, role: str, database: str, **options):
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError(
                f"{connection.vendor} has no database roles: this is for PostgreSQL only",
                returncode=2,
            )
        audit = AuditEvent._meta.db_table
        with transaction.atomic(using=database), connection.cursor() as cursor:
            cursor.execute(
                "SELECT r.rolsuper, pg_get_userbyid(c.relowner), "
                "pg_has_role(r.oid, c.relowner, 'MEMBER'), quote_ident(r.rolname), "
                "quote_ident(current_schema()), quote_ident(c.relname) "
                "FROM pg_roles r, pg_class c "
                "WHERE r.rolname = %s AND c.oid = to_regclass(%s)",
                [role, connection.ops.quote_name(audit)],
            )
            row = cursor.fetchone()
            if row is None:
                raise CommandError(
                    f'No role "{role}", or no audit table yet (run migrate first)', returncode=2
                )
            superuser, owner, member_of_owner, grantee, schema, table = row
            if superuser:
                raise CommandError(
                    f'"{role}" is a superuser, which no privilege limits: the portal must run '
                    "as an ordinary role",
                    returncode=2,
                )
            if member_of_owner:
                raise CommandError(
                    f'"{role}" is (or is a member of) "{owner}", the audit table\'s owner, so '
                    "it could truncate the table or drop its trigger: use another role",
                    returncode=2,
                )
            for statement in (
                f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                f"TO {grantee}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
                # Table-level REVOKE also takes back column privileges.
                f"REVOKE ALL ON {table} FROM {grantee}",
                f"REVOKE ALL ON {table} FROM PUBLIC",
                f"GRANT SELECT, INSERT ON {table} TO {grantee}",
            ):
                cursor.execute(statement)
        self.stdout.write(
            self.style.SUCCESS(
                f'"{role}" may now read and write every table in schema {schema}, and only '
                f"SELECT and INSERT on the audit table {table}."
            )
        )
