"""Which drivers there are: a name (kept on each endpoint's row) -> driver class, label and
settings class.

A driver registers itself where it is defined, with one call:

    register("vsphere", "VMware vSphere (vCenter)", VSphereDriver, VSphereSettings)

Every module and package in composer/drivers/ is imported the first time the registry is
asked, so a new driver is found without being listed anywhere else (docs/adding-a-driver.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import composer.drivers as package
from composer.drivers import settings as settings_
from composer.drivers.base import Driver, DriverError

# Modules of composer/drivers/ that are the machinery, not drivers.
_NOT_DRIVERS = {"base", "registry", "settings"}


@dataclass(frozen=True)
class Registration:
    name: str
    label: str  # shown to people: "VMware vSphere (vCenter)"
    driver_class: type[Driver]
    settings_class: type


class UnknownDriver(DriverError):
    pass


_registered: dict[str, Registration] = {}
_discovered = False


def register(name: str, label: str, driver_class: type[Driver], settings_class: type) -> None:
    """Make the driver known under `name`. Its settings class is checked now (every field made
    with settings.setting()), so a mistake shows when the module is imported."""
    settings_.describe(settings_class)
    if not issubclass(driver_class, Driver):
        raise TypeError(f"{driver_class!r} is not a Driver")
    found = _registered.get(name)
    if found is not None and found.driver_class is not driver_class:
        raise ValueError(f"two drivers named {name!r}: {found.driver_class} and {driver_class}")
    _registered[name] = Registration(name, label, driver_class, settings_class)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_DRIVERS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _discovered = True


def registrations() -> list[Registration]:
    """Every registered driver, in the order registered (the simulator first)."""
    _discover()
    return list(_registered.values())


def get(name: str) -> Registration:
    _discover()
    try:
        return _registered[name]
    except KeyError:
        raise UnknownDriver(f"unknown driver {name!r}") from None


def choices() -> list[tuple[str, str]]:
    """(name, label) of every driver, for a form's driver field."""
    return [(r.name, r.label) for r in registrations()]
