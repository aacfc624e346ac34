"""Hypervisor drivers behind one interface (base.py); `for_endpoint` picks the right one."""

from __future__ import annotations

import functools
import hashlib
import os
from functools import lru_cache
from pathlib import Path

from composer.drivers.base import Driver, DriverError


def for_endpoint(endpoint) -> Driver:
    """The driver for a pools.HypervisorEndpoint row (the one place that reads Django)."""
    from django.conf import settings

    if endpoint.driver == "simulator":
        return _simulator(
            settings.SIMULATOR_REDIS_URL, endpoint.name, settings.SIMULATOR_STEP_SECONDS
        )
    if endpoint.driver == "vsphere":
        from composer.task_journal import DatabaseJournal, DatabasePlaces

        return _vsphere(
            vsphere_config(endpoint), DatabaseJournal(endpoint.pk), DatabasePlaces(endpoint.pk)
        )
    raise ValueError(f"unknown driver {endpoint.driver!r} for endpoint {endpoint.name}")


@lru_cache(maxsize=16)
def _simulator(url: str, namespace: str, step_seconds: float) -> Driver:
    # Cached so a worker reuses one Redis connection pool per endpoint.
    from composer.drivers.simulator import SimulatorDriver

    return SimulatorDriver.from_url(url, namespace=namespace, step_seconds=step_seconds)


def reports_sessions(endpoint) -> bool:
    """Whether the endpoint's hypervisor tells who is logged on (vCenter does not)."""
    return endpoint.driver != "vsphere"


def endpoint_password(endpoint) -> str:
    """The endpoint's password: from its environment variable, else its secret file."""
    if endpoint.password_env and os.environ.get(endpoint.password_env):
        return os.environ[endpoint.password_env]
    if endpoint.password_file:
        try:
            return Path(endpoint.password_file).read_text().strip()
        except OSError as exc:
            raise DriverError(
                f"cannot read the password file {endpoint.password_file} of endpoint "
                f"{endpoint.name}: {exc.strerror}"
            ) from exc
    where = " or ".join(
        filter(
            None, [endpoint.password_env and f"${endpoint.password_env}", endpoint.password_file]
        )
    )
    raise DriverError(
        f"no password for endpoint {endpoint.name}: "
        + (f"{where} is empty" if where else "set its password variable or password file")
    )


def vsphere_config(endpoint):
    from composer.drivers.vsphere import VSphereConfig

    if not endpoint.address:
        raise DriverError(f"endpoint {endpoint.name} has no vCenter address")
    return VSphereConfig(
        host=endpoint.address,
        port=endpoint.port,
        protocol=endpoint.protocol,
        user=endpoint.username,
        password=endpoint_password(endpoint),
        verify_tls=endpoint.verify_tls,
        ca_bundle=endpoint.ca_bundle,
        datacenter=endpoint.datacenter,
        cluster=endpoint.cluster,
        resource_pool=endpoint.resource_pool,
        esx_host=endpoint.esx_host,
        vm_folder=endpoint.vm_folder,
        create_folder=endpoint.create_vm_folder,
        customization_spec=endpoint.customization_spec,
        timeout=float(endpoint.task_timeout_seconds),
    )


_vsphere_drivers: dict = {}


def _vsphere(config, journal, places) -> Driver:
    # One driver (one vCenter session) per connection settings while the process works;
    # close_sessions() lets them go. In a worker, the session outlives the job: the next
    # job resumes it from the worker's cookie jar (composer/worker.py).
    from composer import vsphere_sessions
    from composer.drivers.vsphere import VSphereDriver

    key = (config, journal, places)
    if key not in _vsphere_drivers:
        who = f"{config.protocol}://{config.user}@{config.host}:{config.port}"
        jar = vsphere_sessions.jar_for(hashlib.sha256(who.encode()).hexdigest()[:16])
        _vsphere_drivers[key] = VSphereDriver(config, journal, jar, places)
    return _vsphere_drivers[key]


def close_sessions() -> None:
    """Let go of every vCenter session this process uses. Jobs call it when they end: an RQ
    work horse lives for one job. A worker's session is kept for its next job (and logged
    out when the worker stops); elsewhere it is logged out now, as vCenter caps how many
    sessions it keeps open."""
    while _vsphere_drivers:
        _, driver = _vsphere_drivers.popitem()
        driver.close()


def logs_out(job):
    """Decorate an RQ job so it logs out of vCenter when it ends (see close_sessions)."""

    @functools.wraps(job)
    def run(*args, **kwargs):
        try:
            return job(*args, **kwargs)
        finally:
            close_sessions()

    return run
