"""The simulator as a contract peer: its inventory in the test Redis."""

from __future__ import annotations

from tests.drivers.contract import Peer, build

GIB = 1024


def peer(request):
    from django.conf import settings

    request.getfixturevalue("redis_conn")  # the test Redis, emptied
    options = {"SIMULATOR_REDIS_URL": settings.REDIS_URL, "SIMULATOR_STEP_SECONDS": 0}
    sim = build("simulator", {}, endpoint_name="contract", option=options.__getitem__)
    sim.add_datastore("ds-a", 200 * GIB)
    sim.add_datastore("ds-b", 200 * GIB)
    sim.add_parent_vm("gold", ["v1", "v2"], disk_mb=4 * GIB, used_mb=2 * GIB)
    yield Peer(
        sim,
        "gold",
        ("ds-a", "ds-b"),
        fail=lambda vm, method: sim.fail_desktop(vm, method),
        heal=lambda vm, method: sim.clear_failures(),
    )
    sim.conn.close()
