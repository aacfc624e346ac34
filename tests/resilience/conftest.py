"""A small pool on the simulator, for the resilience tests."""

import pytest

from composer import services


@pytest.fixture
def make_pool(users, lab):
    """make_pool(name, pattern, size): a pool created as an administrator would, on ds-a and
    ds-b (its provisioning queued, not run)."""

    def make(name: str, pattern: str, size: int):
        services.create_pool(
            users["admin"],
            services.PoolSpec(
                name=name,
                naming_pattern=pattern,
                size=size,
                datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
                image_version=lab.v1,
                overcommit=4,
            ),
        )
        return lab.endpoint.pools.get(name=name)

    return make
