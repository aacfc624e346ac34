"""OperationDesktop is DesktopTask (one desktop's task in an operation, beside HypervisorTask,
a vCenter task), and the step that waits for the user to log off is `wait_for_logoff`."""

from django.conf import settings
from django.db import migrations


def rename_step(apps, schema_editor):
    DesktopTask = apps.get_model("composer", "DesktopTask")
    DesktopTask.objects.filter(step="session").update(step="wait_for_logoff")


def unrename_step(apps, schema_editor):
    DesktopTask = apps.get_model("composer", "DesktopTask")
    DesktopTask.objects.filter(step="wait_for_logoff").update(step="session")


class Migration(migrations.Migration):
    dependencies = [
        ("composer", "0011_stamps"),
        ("pools", "0010_desktop_counts_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameModel("OperationDesktop", "DesktopTask"),
        migrations.RunPython(rename_step, unrename_step),
    ]
