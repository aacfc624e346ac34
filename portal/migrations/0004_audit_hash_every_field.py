"""Audit log, issue 9 item 4: the hash covers every column, actor_id and the row's id included.

Rows already there keep the form they were hashed with: they get hash_version 1 (the column
is added with that default, which PostgreSQL writes without rewriting a row, so the
append-only trigger is not involved), and verify_audit checks them in that form; new rows are
version 2. actor_id is hashed from now on, so it must never change: deleting a user no longer
sets it to NULL (no foreign key constraint, nothing done on delete), and the trigger, which
let exactly that UPDATE through, now refuses every UPDATE.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TRIGGER = "portal_auditevent_append_only"

REFUSE_ALL = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % of event % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$
"""

# Migration 0003's function, for going back.
ALLOW_ACTOR_SET_NULL = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % of event % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$
"""


def _replace_function(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            # No parameters: the % in RAISE are PL/pgSQL's, not placeholders.
            schema_editor.execute(sql, None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0003_audit_integrity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=1, editable=False),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(
            _replace_function(REFUSE_ALL), _replace_function(ALLOW_ACTOR_SET_NULL)
        ),
    ]
