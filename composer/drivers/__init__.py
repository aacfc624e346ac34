"""Hypervisor drivers behind one interface (base.py); `for_endpoint` picks the right one."""

from __future__ import annotations

from functools import lru_cache

from composer.drivers.base import Driver


def for_endpoint(endpoint) -> Driver:
    """The driver for a pools.HypervisorEndpoint row (the one place that reads Django)."""
    from django.conf import settings

    if endpoint.driver == "simulator":
        return _simulator(
            settings.SIMULATOR_REDIS_URL, endpoint.name, settings.SIMULATOR_STEP_SECONDS
        )
    raise ValueError(f"unknown driver {endpoint.driver!r} for endpoint {endpoint.name}")


@lru_cache(maxsize=16)
def _simulator(url: str, namespace: str, step_seconds: float) -> Driver:
    # Cached so a worker reuses one Redis connection pool per endpoint.
    from composer.drivers.simulator import SimulatorDriver

    return SimulatorDriver.from_url(url, namespace=namespace, step_seconds=step_seconds)
