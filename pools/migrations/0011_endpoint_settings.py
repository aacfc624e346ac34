# Drivers as plug-ins (issue 12): the vSphere-shaped columns of HypervisorEndpoint move into one
# JSON field, `settings`, checked against the driver's settings class; `vsphere_places`
# becomes `driver_places`. Both directions carry every value across.

from django.db import migrations, models

# The vSphere columns, each with its default: the keys of VSphereSettings
# (composer/drivers/vsphere/settings.py) as they were when this migration was written.
VSPHERE_COLUMNS = {
    "protocol": "https",
    "address": "",
    "port": 443,
    "verify_tls": True,
    "ca_bundle": "",
    "username": "",
    "password_env": "",
    "password_file": "",
    "datacenter": "",
    "cluster": "",
    "resource_pool": "",
    "esx_host": "",
    "vm_folder": "vdi-portal",
    "create_vm_folder": True,
    "customization_spec": "",
    "task_timeout_seconds": 900,
}


def columns_to_settings(apps, schema_editor):
    Endpoint = apps.get_model("pools", "HypervisorEndpoint")
    for endpoint in Endpoint.objects.all():
        # The simulator's rows carried the columns' defaults, which meant nothing to it.
        if endpoint.driver == "vsphere":
            endpoint.settings = {key: getattr(endpoint, key) for key in VSPHERE_COLUMNS}
        else:
            endpoint.settings = {}
        endpoint.save(update_fields=["settings"])


def settings_to_columns(apps, schema_editor):
    Endpoint = apps.get_model("pools", "HypervisorEndpoint")
    for endpoint in Endpoint.objects.all():
        stored = endpoint.settings if isinstance(endpoint.settings, dict) else {}
        for key, default in VSPHERE_COLUMNS.items():
            setattr(endpoint, key, stored.get(key, default))
        endpoint.save(update_fields=list(VSPHERE_COLUMNS))


class Migration(migrations.Migration):

    dependencies = [
        ("pools", "0010_desktop_counts_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="hypervisorendpoint",
            name="settings",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="The driver's own settings (its settings class names and checks each key).",
            ),
        ),
        migrations.RunPython(columns_to_settings, settings_to_columns),
        migrations.RemoveField(model_name="hypervisorendpoint", name="address"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="port"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="protocol"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="username"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="password_env"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="password_file"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="verify_tls"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="ca_bundle"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="datacenter"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="cluster"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="resource_pool"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="esx_host"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="vm_folder"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="create_vm_folder"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="customization_spec"),
        migrations.RemoveField(model_name="hypervisorendpoint", name="task_timeout_seconds"),
        migrations.AlterField(
            model_name="hypervisorendpoint",
            name="driver",
            field=models.CharField(default="simulator", max_length=30),
        ),
        migrations.RenameField(
            model_name="hypervisorendpoint", old_name="vsphere_places", new_name="driver_places"
        ),
    ]
