"""The driver registry and the settings classes: what a driver declares, how an endpoint's
JSON is checked against it (naming the bad key), and how the portal builds the driver."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pytest

from composer import endpoint_drivers
from composer.drivers import registry
from composer.drivers import settings as driver_settings
from composer.drivers.base import DriverError, Host
from composer.drivers.settings import SettingsError, parse, setting
from composer.drivers.simulator import SimulatorDriver, SimulatorSettings
from composer.drivers.vsphere import VSphereConfig, VSphereDriver, VSphereSettings
from pools.models import HypervisorEndpoint


def test_the_registry_knows_both_drivers_with_their_classes():
    choices = registry.choices()
    assert choices[0] == ("simulator", "Simulator")  # the default for a new endpoint
    assert ("vsphere", "VMware vSphere (vCenter)") in choices
    assert registry.get("simulator").driver_class is SimulatorDriver
    assert registry.get("simulator").settings_class is SimulatorSettings
    assert registry.get("vsphere").driver_class is VSphereDriver
    assert registry.get("vsphere").settings_class is VSphereSettings


def test_an_unknown_driver_is_named():
    with pytest.raises(registry.UnknownDriver, match="unknown driver 'hyperv'"):
        registry.get("hyperv")


def test_whether_sessions_are_reported_is_the_driver_class_s():
    assert registry.get("simulator").driver_class.reports_sessions is True
    assert registry.get("vsphere").driver_class.reports_sessions is False


def test_a_settings_field_not_made_with_setting_is_refused_at_registration():
    @dataclass(frozen=True)
    class Loose:
        host: str = ""

    with pytest.raises(TypeError, match="Loose.host is not made with setting"):
        registry.register("loose", "Loose", SimulatorDriver, Loose)
    assert "loose" not in dict(registry.choices())


def test_two_drivers_may_not_share_a_name():
    with pytest.raises(ValueError, match="two drivers named 'vsphere'"):
        registry.register("vsphere", "Another", SimulatorDriver, SimulatorSettings)


@dataclass(frozen=True)
class Example:
    host: str = setting("", label="host", required=True)
    port: int = setting(8006, label="port", min_value=1, max_value=65535)
    ratio: float = setting(1.0, label="ratio")
    tls: bool = setting(True, label="TLS")
    mode: str = setting("a", label="mode", choices=(("a", "A"), ("b", "B")))


def test_missing_keys_take_their_defaults():
    assert parse(Example, {"host": "pve"}) == Example(host="pve")
    assert parse(Example, {"host": "pve", "ratio": 2}).ratio == 2.0  # a whole number is a number


@pytest.mark.parametrize(
    "data, key, message",
    [
        ({"host": "pve", "hots": "x"}, "hots", "unknown setting 'hots'"),
        ({"host": "pve", "port": "8006"}, "port", "setting 'port' must be a whole number"),
        ({"host": "pve", "port": True}, "port", "setting 'port' must be a whole number"),
        ({"host": "pve", "tls": "yes"}, "tls", "setting 'tls' must be true or false"),
        ({"host": 5}, "host", "setting 'host' must be a string"),
        ({}, "host", "setting 'host' (host) is required"),
        ({"host": ""}, "host", "setting 'host' (host) is required"),
        ({"host": "pve", "mode": "c"}, "mode", "setting 'mode' must be one of 'a', 'b'"),
        ({"host": "pve", "port": 0}, "port", "setting 'port' must be at least 1"),
        ({"host": "pve", "port": 70000}, "port", "setting 'port' must be at most 65535"),
    ],
)
def test_a_bad_setting_is_named(data, key, message):
    with pytest.raises(SettingsError, match=re.escape(message)) as caught:
        parse(Example, data)
    assert caught.value.key == key
    assert isinstance(caught.value, DriverError)  # a job fails the desktop, not the worker


def test_settings_must_be_an_object():
    with pytest.raises(SettingsError, match="must be a JSON object"):
        parse(Example, ["host"])


def test_dump_keeps_every_setting_and_parses_back():
    value = Example(host="pve", port=8007, tls=False)
    assert driver_settings.dump(value) == {
        "host": "pve",
        "port": 8007,
        "ratio": 1.0,
        "tls": False,
        "mode": "a",
    }
    assert parse(Example, driver_settings.dump(value)) == value


def test_vsphere_settings_become_its_config_with_the_password_read_now(monkeypatch, tmp_path):
    monkeypatch.setenv("VC_PW", "s3cret")
    settings = parse(
        VSphereSettings,
        {"address": "vc.example", "username": "svc", "password_env": "VC_PW", "vm_folder": "VDI"},
    )
    config = VSphereDriver.configure(settings, Host(endpoint_name="vc"))
    assert config == VSphereConfig(
        host="vc.example", user="svc", password="s3cret", vm_folder="VDI", timeout=900.0
    )
    # Not in the variable: the file.
    monkeypatch.delenv("VC_PW")
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = dataclasses.replace(settings, password_file=str(secret))
    assert VSphereDriver.configure(settings, Host(endpoint_name="vc")).password == "from-file"
    settings = dataclasses.replace(settings, password_file="")
    with pytest.raises(DriverError, match=r"no password for endpoint vc: \$VC_PW is empty"):
        VSphereDriver.configure(settings, Host(endpoint_name="vc"))


def test_no_setting_holds_a_secret():
    """Settings are stored in the database: a driver names where its secret is read from."""
    for found in registry.registrations():
        for s in driver_settings.describe(found.settings_class):
            assert s.name not in {"password", "secret", "token", "key"}, (found.name, s.name)


@pytest.mark.django_db
def test_for_endpoint_names_the_endpoint_and_the_bad_key():
    endpoint = HypervisorEndpoint.objects.create(
        name="vc-typo", driver="vsphere", settings={"adress": "vc.example"}
    )
    with pytest.raises(SettingsError, match="endpoint vc-typo: unknown setting 'adress'"):
        endpoint_drivers.for_endpoint(endpoint)
    endpoint.driver = "hyperv"
    with pytest.raises(DriverError, match="unknown driver 'hyperv' for endpoint vc-typo"):
        endpoint_drivers.for_endpoint(endpoint)


@pytest.mark.django_db
def test_for_endpoint_keeps_one_driver_per_configuration(redis_conn, monkeypatch):
    sim = HypervisorEndpoint.objects.create(name="sim-a")
    assert endpoint_drivers.for_endpoint(sim) is endpoint_drivers.for_endpoint(sim)
    monkeypatch.setenv("VC_PW", "one")
    vc = HypervisorEndpoint.objects.create(
        name="vc", driver="vsphere", settings={"address": "127.0.0.1", "password_env": "VC_PW"}
    )
    first = endpoint_drivers.for_endpoint(vc)
    assert endpoint_drivers.for_endpoint(vc) is first
    monkeypatch.setenv("VC_PW", "two")  # a new password: a new driver
    assert endpoint_drivers.for_endpoint(vc) is not first
    # Jobs let go of vCenter sessions when they end; the simulator's Redis pool is kept.
    kept = endpoint_drivers.for_endpoint(sim)
    endpoint_drivers.close_sessions()
    assert endpoint_drivers.for_endpoint(sim) is kept
    assert not any(d.holds_session for d in endpoint_drivers._drivers.values())
