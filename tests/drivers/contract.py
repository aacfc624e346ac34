"""What the shared driver contract suite (test_driver_contract.py) needs of each driver: a
`Peer`, made by the module `tests/drivers/peer_<name>.py` of every registered driver.

A peer module defines `peer(request)`, a generator that yields a Peer and then cleans up
(pytest's `request` gives it fixtures: `request.getfixturevalue("redis_conn")`). A driver
whose hypervisor cannot run on this machine says so with `pytest.skip(reason)` there: never
silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from composer.drivers import registry
from composer.drivers import settings as driver_settings
from composer.drivers.base import Driver, Host


@dataclass
class Peer:
    """A driver and the hypervisor behind it, as the contract tests need them."""

    driver: Driver
    parent: str  # a parent VM with snapshots v1 and v2
    datastores: tuple[str, str]  # two datastores with room for a few clones and disks
    fail: Callable[[str, str], None]  # fail(vm, driver method): the hypervisor refuses it
    heal: Callable[[str, str], None]
    # Driver methods `fail` cannot break on this hypervisor, with the reason (a skip).
    cannot_fail: dict[str, str] = field(default_factory=dict)


def build(name: str, settings: dict, **host) -> Driver:
    """The driver `name` made the way the portal makes it (composer/endpoint_drivers.py):
    its settings checked by the registry's settings class, then configure and connect."""
    found = registry.get(name)
    parsed = driver_settings.parse(found.settings_class, settings)
    lent = Host(**host)
    return found.driver_class.connect(found.driver_class.configure(parsed, lent), lent)


def peer_module(name: str):
    try:
        return importlib.import_module(f"tests.drivers.peer_{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.drivers.peer_{name}":
            raise
        pytest.fail(
            f"driver {name!r} is registered but has no tests/drivers/peer_{name}.py: every "
            "driver runs the contract suite (docs/adding-a-driver.md)"
        )
