"""Audit log integrity (issue 4): hash chain, append-only trigger on PostgreSQL, export
permission, indexes for the audit page's filters.

Order matters: the columns are added, the rows already there are chained in id order (so
`verify_audit` passes on an upgraded database), prev_hash becomes unique, and only then does
PostgreSQL get the trigger that refuses UPDATE and DELETE.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TRIGGER = "portal_auditevent_append_only"


def chain_existing_rows(apps, schema_editor):
    # The live hash function, not a frozen copy: the canonical form is versioned
    # (HASH_VERSION), and a change of it must keep hashing version 1 rows the same way.
    from audit.models import GENESIS_HASH, compute_hash  # (in portal/models.py then)

    AuditEvent = apps.get_model("portal", "AuditEvent")
    db = schema_editor.connection.alias
    prev_hash = GENESIS_HASH
    batch = []
    for event in AuditEvent.objects.using(db).order_by("id").iterator(chunk_size=1000):
        event.prev_hash = prev_hash
        event.hash = compute_hash(event)
        prev_hash = event.hash
        batch.append(event)
        if len(batch) >= 1000:
            AuditEvent.objects.using(db).bulk_update(batch, ["prev_hash", "hash"])
            batch = []
    if batch:
        AuditEvent.objects.using(db).bulk_update(batch, ["prev_hash", "hash"])


def install_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite has no such guard; the hash chain still shows any change.
    table = schema_editor.quote_name(apps.get_model("portal", "AuditEvent")._meta.db_table)
    # Row-level, so TRUNCATE (Django's test flush, `manage.py flush`) is not stopped: that
    # needs the table owner's rights, which also allow dropping the trigger anyway.
    # The one UPDATE let through is Django's on_delete=SET_NULL when a user is deleted: only
    # actor_id changes, to NULL, and actor_id is not part of the hash (actor_name is).
    schema_editor.execute(
        f"""
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
        """,
        None,  # no parameters: the % in RAISE are PL/pgSQL's, not placeholders
    )
    schema_editor.execute(
        f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()",
        None,
    )


def remove_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("portal", "AuditEvent")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {TRIGGER}()")


class Migration(migrations.Migration):
    dependencies = [
        ("composer", "0001_initial"),
        ("portal", "0002_audit_outcomes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["-at", "-id"],
                "permissions": [
                    ("view_audit", "Can review the audit log"),
                    ("export_audit", "Can export the audit log"),
                ],
            },
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="operation",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="audit",
                to="composer.operation",
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("planned", "Planned"),
                    ("denied", "Denied"),
                    ("succeeded", "Succeeded"),
                    ("partially_failed", "Partially failed"),
                    ("failed", "Failed"),
                    ("refused", "Refused"),
                    ("cancelled", "Cancelled"),
                    ("interrupted", "Interrupted"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(chain_existing_rows, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("prev_hash",), name="audit_prev_hash_unique"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["outcome", "at"], name="audit_outcome_at"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["action", "at"], name="audit_action_at"),
        ),
        migrations.RunPython(install_trigger, remove_trigger),
    ]
