"""Trigram indexes for the partial desktop search (pool page `q`, helpdesk), PostgreSQL only.

`name__icontains` is `UPPER(name::text) LIKE UPPER('%q%')`: no b-tree serves it, so each search
read all 50,000 desktops (bench/pages.py). pg_trgm's GIN indexes on the same expressions do.
pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. If it
cannot be created, the search works as before, only slower: say so and go on.
"""

import logging

from django.db import DatabaseError, migrations, transaction

log = logging.getLogger(__name__)

COLUMNS = ("name", "assigned_user", "session_user")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        log.warning("pg_trgm not available (%s): desktop search stays unindexed", exc)
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS desktop_{column}_trgm ON pools_desktop "
            f'USING gin (UPPER("{column}"::text) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS desktop_{column}_trgm")


class Migration(migrations.Migration):
    dependencies = [("pools", "0008_desktop_updated_index")]

    operations = [migrations.RunPython(create, drop)]
