"""The audit log becomes an app of its own (it was part of the portal app): the model moves
in Django's state only. The table keeps its name (portal_auditevent), its rows, its hash
chain and, on PostgreSQL, its append-only trigger, and nothing in the database is touched
except the content type, renamed so that permissions given on the log stay given."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor, old="portal", new="audit"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label=new, model="auditevent").exists():
        return  # already made (a database migrated back and forth): keep it
    ContentType.objects.using(db).filter(app_label=old, model="auditevent").update(
        app_label=new
    )


def move_content_type_back(apps, schema_editor):
    move_content_type(apps, schema_editor, old="audit", new="portal")


class Migration(migrations.Migration):


    dependencies = [
        ("portal", "0006_audit_target_index"),
        ("composer", "0011_stamps"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('actor_name', models.CharField(max_length=150)),
                        ('role', models.CharField(blank=True, max_length=50)),
                        ('action', models.CharField(max_length=50)),
                        ('target_type', models.CharField(blank=True, max_length=50)),
                        ('target_id', models.CharField(blank=True, max_length=64)),
                        ('target_name', models.CharField(blank=True, max_length=255)),
                        ('outcome', models.CharField(choices=[('requested', 'Requested'), ('planned', 'Planned'), ('denied', 'Denied'), ('succeeded', 'Succeeded'), ('partially_failed', 'Partially failed'), ('failed', 'Failed'), ('refused', 'Refused'), ('cancelled', 'Cancelled'), ('interrupted', 'Interrupted')], max_length=20)),
                        ('message', models.TextField(blank=True)),
                        ('parameters', models.JSONField(blank=True, default=dict)),
                        ('request_id', models.CharField(blank=True, max_length=64)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('prev_hash', models.CharField(editable=False, max_length=64)),
                        ('hash', models.CharField(editable=False, max_length=64)),
                        ('hash_version', models.PositiveSmallIntegerField(editable=False)),
                        ('actor', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('operation', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='audit', to='composer.operation')),
                    ],
                    options={
                        'db_table': 'portal_auditevent',
                        'ordering': ['-at', '-id'],
                        'permissions': [('view_audit', 'Can review the audit log'), ('export_audit', 'Can export the audit log')],
                        'indexes': [models.Index(fields=['outcome', 'at'], name='audit_outcome_at'), models.Index(fields=['action', 'at'], name='audit_action_at'), models.Index(fields=['target_type', 'target_id', 'at'], name='audit_target_at')],
                        'constraints': [models.UniqueConstraint(fields=('prev_hash',), name='audit_prev_hash_unique')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
