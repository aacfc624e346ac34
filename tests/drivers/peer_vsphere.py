"""The vSphere driver as a contract peer, against govmomi's vCenter simulator (built by
tests/vsphere/build_vcsim.sh; where Go or govmomi is missing the vcsim_binary fixture skips,
saying so, and fails under REQUIRE_VSPHERE=1)."""

from __future__ import annotations

from tests.drivers.contract import Peer, build

PASSWORD_ENV = "VCSIM_CONTRACT_PASSWORD"

# The vCenter call behind each driver method the failure tests break.
METHODS = {
    "relink": "ReconfigVM_Task",
    "customize": "CustomizeVM_Task",
    "checkpoint": "CreateSnapshot_Task",
    "power_on": "PowerOnVM_Task",
    "power_off": "PowerOffVM_Task",
    "attach_disk": "ReconfigVM_Task",
    "move_vm": "RelocateVM_Task",
}


def peer(request):
    from tests.vsphere import vcsim

    sim = request.getfixturevalue("start_vcsim")()
    request.getfixturevalue("monkeypatch").setenv(PASSWORD_ENV, vcsim.PASSWORD)
    reader = vcsim.Reader(sim)
    for snapshot in ("v1", "v2"):
        reader.snapshot_parent(vcsim.PARENT_VM, snapshot)
    reader.close()
    settings = {
        "address": sim.host,
        "port": sim.port,
        "protocol": "http",
        "username": vcsim.USER,
        "password_env": PASSWORD_ENV,
        "task_timeout_seconds": 30,
    }
    driver = build("vsphere", settings, endpoint_name="contract")
    yield Peer(
        driver,
        vcsim.PARENT_VM,
        ("LocalDS_0", "LocalDS_1"),
        fail=lambda vm, method: sim.fail(vm, METHODS[method]),
        heal=lambda vm, method: sim.heal(vm, METHODS[method]),
        # vcsim refuses calls per VM; a revert is a call on the snapshot object.
        cannot_fail={"revert": "the vCenter simulator cannot refuse a call on a snapshot"},
    )
    driver.close()
