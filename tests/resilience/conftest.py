"""A small pool on the simulator, for the resilience tests."""

import pytest

from tests import factories


@pytest.fixture
def make_pool(users, lab):
    """make_pool(name, pattern, size): a pool created as an administrator would, on ds-a and
    ds-b (its provisioning queued, not run)."""

    def make(name: str, pattern: str, size: int):
        return factories.requested_pool(users["admin"], lab, name, pattern, size)

    return make
