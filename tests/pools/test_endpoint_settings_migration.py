"""Migration 0011: the vSphere columns of an endpoint move into its `settings` JSON and back,
every value carried across."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from composer.drivers import settings as driver_settings
from composer.drivers.vsphere import VSphereSettings

pytestmark = pytest.mark.django_db(transaction=True)  # migrations change the schema

BEFORE = [("pools", "0010_desktop_counts_index")]
AFTER = [("pools", "0011_endpoint_settings")]

# Every column set, none to its default.
VSPHERE = {
    "address": "vc.example.org",
    "port": 8443,
    "protocol": "http",
    "username": "svc-vdi@vsphere.local",
    "password_env": "VC_PASSWORD",
    "password_file": "/run/secrets/vc",
    "verify_tls": False,
    "ca_bundle": "/etc/ssl/vc-ca.pem",
    "datacenter": "/Europe/DC0",
    "cluster": "VDI-Cluster",
    "resource_pool": "VDI/Desktops",
    "esx_host": "esx-07",
    "vm_folder": "VDI/Pools",
    "create_vm_folder": False,
    "customization_spec": "domain-join",
    "task_timeout_seconds": 120,
}


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0010():
    apps = migrate(BEFORE)
    yield apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the schema the other tests expect


def test_vsphere_columns_move_into_settings_and_back(at_0010):
    Endpoint = at_0010.get_model("pools", "HypervisorEndpoint")
    vc = Endpoint.objects.create(
        name="vc", driver="vsphere", max_provisioning=3, vsphere_places={"dc": 1}, **VSPHERE
    )
    sim = Endpoint.objects.create(name="sim", driver="simulator")

    apps = migrate(AFTER)
    Endpoint = apps.get_model("pools", "HypervisorEndpoint")
    migrated = Endpoint.objects.get(pk=vc.pk)
    assert migrated.settings == VSPHERE
    assert (migrated.max_provisioning, migrated.driver_places) == (3, {"dc": 1})
    # The JSON is what the vSphere driver's settings class takes, key for key.
    assert driver_settings.dump(driver_settings.parse(VSphereSettings, migrated.settings)) == (
        VSPHERE
    )
    assert Endpoint.objects.get(pk=sim.pk).settings == {}  # the columns meant nothing to it

    apps = migrate(BEFORE)
    Endpoint = apps.get_model("pools", "HypervisorEndpoint")
    back = Endpoint.objects.get(pk=vc.pk)
    assert {key: getattr(back, key) for key in VSPHERE} == VSPHERE
    assert back.vsphere_places == {"dc": 1}


def test_back_a_row_missing_keys_gets_the_column_defaults(at_0010):
    apps = migrate(AFTER)
    Endpoint = apps.get_model("pools", "HypervisorEndpoint")
    row = Endpoint.objects.create(name="vc", driver="vsphere", settings={"address": "vc"})
    apps = migrate(BEFORE)
    back = apps.get_model("pools", "HypervisorEndpoint").objects.get(pk=row.pk)
    assert (back.address, back.port, back.vm_folder, back.task_timeout_seconds) == (
        "vc",
        443,
        "vdi-portal",
        900,
    )
