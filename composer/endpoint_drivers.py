"""The driver of each hypervisor endpoint, built from its row (the one place that joins Django
to composer/drivers, which know neither Django nor the models).

`for_endpoint` looks the endpoint's driver up in the registry, checks its settings (the
row's JSON) against the driver's settings class, and lends it what the portal has: the task
journal and the found places on the database, Django's settings as options, the worker's
session jar. One driver is kept per configuration while the process works; drivers that hold
a hypervisor session (vCenter) are let go when a job ends (`logs_out`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings

from composer import vsphere_sessions
from composer.drivers import registry
from composer.drivers import settings as driver_settings
from composer.drivers.base import Driver, DriverError, Host
from composer.drivers.registry import Registration, UnknownDriver
from composer.drivers.settings import SettingsError
from composer.task_journal import DatabaseJournal, DatabasePlaces
from pools.models import HypervisorEndpoint

KEPT = 16  # drivers kept per process (one per endpoint and configuration)
_drivers: OrderedDict[tuple, Driver] = OrderedDict()


def registration(endpoint) -> Registration:
    """The endpoint's driver as registered; UnknownDriver (a DriverError) names it."""
    try:
        return registry.get(endpoint.driver)
    except UnknownDriver as exc:
        raise UnknownDriver(f"{exc} for endpoint {endpoint.name}") from None


def driver_class(endpoint) -> type[Driver]:
    """What the endpoint's driver can do (e.g. `reports_sessions`), without connecting."""
    return registration(endpoint).driver_class


def settings_of(endpoint) -> Any:
    """The endpoint's settings as its driver's settings class; SettingsError names the bad
    key."""
    try:
        return driver_settings.parse(registration(endpoint).settings_class, endpoint.settings)
    except SettingsError as exc:
        raise SettingsError(exc.key, f"endpoint {endpoint.name}: {exc}") from None


def _option(name: str) -> Any:
    try:
        return getattr(django_settings, name)
    except AttributeError:
        raise DriverError(f"the portal has no setting {name}") from None


def host(endpoint) -> Host:
    return Host(
        endpoint_id=endpoint.pk,
        endpoint_name=endpoint.name,
        journal=DatabaseJournal(endpoint.pk),
        places=DatabasePlaces(endpoint.pk),
        option=_option,
        session_jar=vsphere_sessions.jar_for,
    )


def for_endpoint(endpoint) -> Driver:
    """The driver for a pools.HypervisorEndpoint row. DriverError when the driver is unknown,
    a setting is wrong or a secret cannot be read."""
    found = registration(endpoint)
    lent = host(endpoint)
    config = found.driver_class.configure(settings_of(endpoint), lent)
    # The configuration holds what was read now (a password, the simulator's Redis), so a
    # change makes a new driver.
    key = (found.name, config, lent)
    if key in _drivers:
        _drivers.move_to_end(key)
        return _drivers[key]
    driver = _drivers[key] = found.driver_class.connect(config, lent)
    while len(_drivers) > KEPT:
        _, evicted = _drivers.popitem(last=False)
        if evicted.holds_session:
            evicted.close()  # not left open for vCenter to count (it reconnects if used)
    return driver


def close_sessions() -> None:
    """Let go of every hypervisor session this process holds (vCenter's). Jobs call it when
    they end: an RQ work horse lives for one job. A worker's session is kept for its next job
    (and logged out when the worker stops); elsewhere it is logged out now, as vCenter caps
    how many sessions it keeps open. Drivers without a session are kept."""
    for key in [k for k, d in _drivers.items() if d.holds_session]:
        _drivers.pop(key).close()


def logs_out(job):
    """Decorate an RQ job so it logs out of vCenter when it ends (see close_sessions)."""

    @functools.wraps(job)
    def run(*args, **kwargs):
        try:
            return job(*args, **kwargs)
        finally:
            close_sessions()

    return run


@dataclass
class Description:
    """An endpoint's driver and settings as the Hypervisors page shows them."""

    label: str
    summary: str = ""  # where it is, in one line
    warnings: list[str] = field(default_factory=list)
    settings: list[tuple[str, Any]] = field(default_factory=list)  # (label, value) when set
    error: str = ""  # the settings do not fit the driver


def describe(endpoint) -> Description:
    """What the page says about the endpoint's driver and settings; never raises, since a
    wrong row is what an administrator needs to see."""
    try:
        found = registration(endpoint)
    except UnknownDriver as exc:
        return Description(label=endpoint.driver, error=str(exc))
    out = Description(label=found.label)
    stored = endpoint.settings if isinstance(endpoint.settings, dict) else {}
    for s in driver_settings.describe(found.settings_class):
        value = stored.get(s.name, s.default)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if value not in ("", None):
            out.settings.append((s.label, value))
    try:
        parsed = settings_of(endpoint)
    except SettingsError as exc:
        out.error = str(exc)
        return out
    out.summary = parsed.summary() if hasattr(parsed, "summary") else ""
    out.warnings = parsed.warnings() if hasattr(parsed, "warnings") else []
    return out


def log_out_all(owner: str) -> int:
    """Log out every session the worker `owner` kept (when it stops)."""
    conn = vsphere_sessions.connection()
    keys = list(conn.scan_iter(match=f"{vsphere_sessions.PREFIX}{owner}:*"))
    if not keys:
        return 0
    done = 0
    holding = [r.name for r in registry.registrations() if r.driver_class.holds_session]
    for endpoint in HypervisorEndpoint.objects.filter(driver__in=holding):
        try:
            driver = for_endpoint(endpoint)
        except Exception:  # no password any more, say: nothing to log out with
            continue
        if driver.session.jar is not None and driver.session.jar.key.encode() in keys:
            driver.session.log_out()
            done += 1
    conn.delete(*keys)
    return done
