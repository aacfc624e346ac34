"""The endpoint's admin form, built from the driver's settings class: one field per setting,
checked as the engine checks them, saved as the row's settings JSON."""

import pytest
from django.urls import reverse

from composer.drivers import registry
from composer.drivers import settings as driver_settings
from pools.models import HypervisorEndpoint
from portal.endpoint_forms import endpoint_form

pytestmark = pytest.mark.django_db

ADD = reverse("admin:pools_hypervisorendpoint_add")
LIMITS = {"outage_window_seconds": 600, "max_provisioning": 8, "max_maintenance": 12}
VSPHERE = {
    "protocol": "https",
    "address": "vc.example.org",
    "port": 443,
    "verify_tls": "on",
    "username": "svc-vdi@vsphere.local",
    "password_env": "VC_PASSWORD",
    "vm_folder": "VDI/Pools",
    "create_vm_folder": "on",
    "task_timeout_seconds": 900,
}


@pytest.fixture
def staff(client, users):
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    return client


def change(endpoint):
    return reverse("admin:pools_hypervisorendpoint_change", args=[endpoint.pk])


@pytest.mark.parametrize("name", [r.name for r in registry.registrations()])
def test_each_driver_s_form_has_a_field_per_setting(name):
    found = registry.get(name)
    form = endpoint_form(name)()
    names = [s.name for s in driver_settings.describe(found.settings_class)]
    assert set(names) <= set(form.fields)
    for s in driver_settings.describe(found.settings_class):
        assert form.fields[s.name].initial == s.default
        assert form.fields[s.name].help_text == s.help_text
    assert dict(form.fields["driver"].choices) == dict(registry.choices())


def test_add_a_vsphere_endpoint_keeps_its_settings_as_json(staff):
    page = staff.get(f"{ADD}?driver=vsphere").content.decode()
    for field in ("address", "password_env", "vm_folder", "task_timeout_seconds"):
        assert f'name="{field}"' in page
    assert 'name="password"' not in page  # never asked for, never stored
    response = staff.post(ADD, {"name": "vc", "driver": "vsphere", **LIMITS, **VSPHERE})
    assert response.status_code == 302, response.content.decode()
    endpoint = HypervisorEndpoint.objects.get(name="vc")
    assert endpoint.settings == {
        **VSPHERE,
        "verify_tls": True,
        "create_vm_folder": True,
        "ca_bundle": "",
        "password_file": "",
        "datacenter": "",
        "cluster": "",
        "resource_pool": "",
        "esx_host": "",
        "customization_spec": "",
    }


def test_add_a_simulator_endpoint_has_no_settings(staff):
    page = staff.get(ADD).content.decode()
    assert 'name="address"' not in page
    assert '<a href="?driver=vsphere">VMware vSphere (vCenter)</a>' in page
    response = staff.post(ADD, {"name": "sim", "driver": "simulator", **LIMITS})
    assert response.status_code == 302
    assert HypervisorEndpoint.objects.get(name="sim").settings == {}


@pytest.mark.parametrize(
    "changed, field, message",
    [
        ({"address": ""}, "address", "This field is required."),
        ({"port": "https"}, "port", "Enter a whole number."),
        ({"port": 0}, "port", "Ensure this value is greater than or equal to 1."),
        ({"protocol": "ftp"}, "protocol", "Select a valid choice."),
        ({"task_timeout_seconds": 0}, "task_timeout_seconds", "greater than or equal to 1"),
    ],
)
def test_a_bad_setting_is_shown_at_its_field_and_nothing_is_saved(staff, changed, field, message):
    response = staff.post(ADD, {"name": "vc", "driver": "vsphere", **LIMITS, **VSPHERE, **changed})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field])
    assert not HypervisorEndpoint.objects.exists()


def test_the_change_page_shows_the_stored_settings(staff):
    endpoint = HypervisorEndpoint.objects.create(
        name="vc", driver="vsphere", settings={"address": "vc.example.org", "port": 8443}
    )
    form = staff.get(change(endpoint)).context["adminform"].form
    assert (form.initial["address"], form.initial["port"]) == ("vc.example.org", 8443)
    # What the browser sends back: every field as shown (an unticked box not at all).
    shown = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in shown.items() if v is not False} | {"password_env": "VC_PW"}
    assert staff.post(change(endpoint), data).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.settings["port"] == 8443 and endpoint.settings["password_env"] == "VC_PW"


def test_switching_a_simulator_to_vsphere_asks_for_vsphere_s_settings(staff, lab):
    response = staff.post(change(lab.endpoint), {"name": "sim-test", "driver": "vsphere", **LIMITS})
    assert response.status_code == 200
    assert "address" in response.context["adminform"].form.errors
    lab.endpoint.refresh_from_db()
    assert (lab.endpoint.driver, lab.endpoint.settings) == ("simulator", {})


def test_an_unknown_driver_is_not_offered(staff):
    response = staff.post(ADD, {"name": "hv", "driver": "hyperv", **LIMITS})
    assert response.status_code == 200
    assert "driver" in response.context["adminform"].form.errors
