"""The contract suite's peer: one per registered driver, so a new driver is tested as soon as
it registers (and fails until it has its tests/drivers/peer_<name>.py)."""

import pytest

from composer.drivers import registry
from tests.drivers.contract import peer_module
from tests.vsphere.conftest import start_vcsim, vcsim_binary  # noqa: F401 (fixtures)


@pytest.fixture(params=[r.name for r in registry.registrations()])
def peer(request):
    yield from peer_module(request.param).peer(request)
