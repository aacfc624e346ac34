"""The audit log moved to its own app (audit/migrations/0001_initial.py): the model leaves the
portal app's state only; its table stays as it is."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0006_audit_target_index"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEvent")],
            database_operations=[],
        ),
    ]
