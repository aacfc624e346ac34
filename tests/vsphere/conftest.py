"""Fixtures for the vSphere driver's tests against govmomi's simulator.

The simulator is built once per run (tests/vsphere/build_vcsim.sh). Where Go or govmomi is
missing the tests skip, unless REQUIRE_VSPHERE=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests.vsphere import vcsim

PASSWORD_ENV = "VCSIM_TEST_PASSWORD"
GIB = 1024


@pytest.fixture(scope="session")
def vcsim_binary():
    built, why = vcsim.build()
    if not built:
        if os.environ.get("REQUIRE_VSPHERE") == "1":
            pytest.fail(f"the vSphere tests must run here, but vcsim did not build: {why}")
        pytest.skip(f"vcsim not available: {why}")
    return vcsim.BINARY


@pytest.fixture
def start_vcsim(vcsim_binary):
    """Start simulators (any options of vcsim.start); all are stopped after the test."""
    started = []

    def start(**options) -> vcsim.Vcsim:
        sim = vcsim.start(**options)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        # Shown with a failing test's output: what the simulator logged.
        print(f"--- vcsim on port {sim.port}, last lines:")
        print("\n".join(sim.output().splitlines()[-30:]))
        sim.stop()


def make_endpoint(sim: vcsim.Vcsim, name="vc-test", timeout=60, **settings):
    """A vSphere endpoint on the simulator; `settings` add to or override its settings."""
    from pools.models import HypervisorEndpoint

    return HypervisorEndpoint.objects.create(
        name=name,
        driver="vsphere",
        settings={
            "address": sim.host,
            "port": sim.port,
            "protocol": "https" if sim.cert else "http",
            "username": vcsim.USER,
            "password_env": PASSWORD_ENV,
            "task_timeout_seconds": timeout,
            **settings,
        },
        max_provisioning=4,
        max_maintenance=4,
    )


@pytest.fixture
def vsphere_lab(db, redis_conn, start_vcsim, monkeypatch, request):
    """A simulated vCenter with two datastores and a golden image with snapshots v1 and v2,
    mirrored into the inventory tables. `@pytest.mark.vcsim(method_delay=..., timeout=...)`
    adds latency per method and sets the endpoint's task timeout."""
    from composer import endpoint_drivers
    from composer.inventory import sync_datastores
    from pools.models import BaseImage, ImageVersion

    marker = request.node.get_closest_marker("vcsim")
    options = dict(marker.kwargs) if marker else {}
    timeout = options.pop("timeout", 60)
    sim = start_vcsim(**options)
    monkeypatch.setenv(PASSWORD_ENV, vcsim.PASSWORD)
    endpoint_drivers.close_sessions()  # no connection to an earlier test's simulator
    reader = vcsim.Reader(sim)
    reader.snapshot_parent(vcsim.PARENT_VM, "v1")
    reader.snapshot_parent(vcsim.PARENT_VM, "v2")
    endpoint = make_endpoint(sim, timeout=timeout)
    datastores = {ds.name: ds for ds in sync_datastores(endpoint)}
    image = BaseImage.objects.create(endpoint=endpoint, name="Win11", parent_vm=vcsim.PARENT_VM)
    v1 = ImageVersion.objects.create(image=image, snapshot="v1", disk_mb=4 * GIB, used_mb=2 * GIB)
    v2 = ImageVersion.objects.create(image=image, snapshot="v2", disk_mb=4 * GIB, used_mb=2 * GIB)
    yield SimpleNamespace(
        sim=sim,
        endpoint=endpoint,
        driver=endpoint_drivers.for_endpoint(endpoint),
        vc=reader,
        ds=datastores,
        v1=v1,
        v2=v2,
        env={PASSWORD_ENV: vcsim.PASSWORD},
    )
    reader.close()
    endpoint_drivers.close_sessions()
