"""The driver contract (composer/drivers/base.py), run against every registered driver
(conftest.py): the simulator, and the vSphere driver against govmomi's vCenter simulator.

What the composer relies on: every call can be made again after a crash and finds its work
done; what is missing is NotFound where the contract says so and not an error where it says
that; a failure at any call leaves the VM usable, and calling again completes the work.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from composer.drivers.base import (
    POWER_OFF,
    POWER_ON,
    CustomizationSpec,
    DriverError,
    NotFound,
)
from tests.drivers.contract import Peer

GIB = 1024


def provisioned(peer: Peer, name="VDI-001", disk=True) -> SimpleNamespace:
    d = peer.driver
    ds = peer.datastores[0]
    image = d.describe_image(peer.parent, "v1")
    replica = d.clone_replica(image, ds, f"replica-v1-{ds}")
    vm = d.create_linked_clone(name, replica, ds)
    d.customize(name, CustomizationSpec(name))
    if disk:
        d.create_disk(f"{name}-pd", ds, GIB)
        d.attach_disk(name, f"{name}-pd", ds)
    checkpoint = d.checkpoint(name)
    d.power_on(name)
    return SimpleNamespace(image=image, replica=replica, vm=vm, checkpoint=checkpoint, ds=ds)


def assert_usable(peer: Peer, name: str, disk: str | None = None):
    """The VM is there, and keeps its persistent disk: a desktop an operator can carry on."""
    vm = peer.driver.get_vm(name)
    assert vm.kind == "clone"
    if disk:
        assert disk in vm.disks, (name, vm.disks)
    return vm


def test_every_call_made_twice_finds_its_work_done(peer):
    d = peer.driver
    first = provisioned(peer)
    ds = first.ds
    image = d.describe_image(peer.parent, "v1")
    assert image == first.image  # the same ids and sizes each time
    assert d.clone_replica(image, ds, f"replica-v1-{ds}") == first.replica
    assert d.create_linked_clone("VDI-001", first.replica, ds).ref == first.vm.ref
    d.create_disk("VDI-001-pd", ds, GIB)
    d.attach_disk("VDI-001", "VDI-001-pd", ds)
    assert d.checkpoint("VDI-001") == first.checkpoint
    d.power_on("VDI-001")
    vm = d.get_vm("VDI-001")
    assert vm.power == POWER_ON and vm.disks == ("VDI-001-pd",)
    assert vm.checkpoint == first.checkpoint

    d.power_off("VDI-001")
    d.power_off("VDI-001")
    d.revert("VDI-001", first.checkpoint)
    d.revert("VDI-001", first.checkpoint)
    d.detach_disk("VDI-001", "VDI-001-pd")
    d.detach_disk("VDI-001", "VDI-001-pd")
    other = peer.datastores[1]
    d.move_disk("VDI-001-pd", ds, other)
    d.move_disk("VDI-001-pd", ds, other)  # a retry after a crash: moved already
    d.delete_disk("VDI-001-pd", other)
    d.delete_disk("VDI-001-pd", other)
    d.delete_vm("VDI-001")
    d.delete_vm("VDI-001")
    d.delete_replica(first.replica.name)
    d.delete_replica(first.replica.name)
    assert [v.name for v in d.inventory().vms if v.kind in ("clone", "replica")] == []


def test_what_is_missing_is_not_found_where_the_work_needs_it(peer):
    d = peer.driver
    with pytest.raises(NotFound):
        d.get_vm("NOPE-1")
    with pytest.raises(NotFound):
        d.power_on("NOPE-1")
    with pytest.raises(NotFound):
        d.describe_image(peer.parent, "v9")
    with pytest.raises(NotFound):
        d.describe_image("no-such-parent", "v1")
    first = provisioned(peer, disk=False)
    with pytest.raises(NotFound):
        d.revert("VDI-001", "no-such-checkpoint")
    with pytest.raises(NotFound):
        d.attach_disk("VDI-001", "never-made", first.ds)
    # ...and missing is fine where the work is to make it go away.
    d.delete_vm("NOPE-1")
    d.detach_disk("NOPE-1", "never-made")
    d.delete_disk("never-made", first.ds)
    d.delete_replica("replica-never-made")


def test_relink_gives_a_fresh_delta_and_keeps_the_persistent_disk(peer):
    d = peer.driver
    first = provisioned(peer)
    image2 = d.describe_image(peer.parent, "v2")
    replica2 = d.clone_replica(image2, first.ds, f"replica-v2-{first.ds}")
    d.power_off("VDI-001")
    d.relink("VDI-001", replica2)
    vm = assert_usable(peer, "VDI-001", "VDI-001-pd")
    assert vm.replica == replica2.name and vm.checkpoint == ""
    d.relink("VDI-001", replica2)  # again: rebuilt again, still whole
    vm = assert_usable(peer, "VDI-001", "VDI-001-pd")
    assert vm.replica == replica2.name and vm.power == POWER_OFF


@pytest.mark.parametrize(
    "method", ["power_off", "relink", "customize", "checkpoint", "power_on", "revert"]
)
def test_a_failure_at_any_call_leaves_the_vm_usable_and_a_retry_completes(peer, method):
    if method in peer.cannot_fail:
        pytest.skip(peer.cannot_fail[method])
    d = peer.driver
    first = provisioned(peer)
    image2 = d.describe_image(peer.parent, "v2")
    replica2 = d.clone_replica(image2, first.ds, f"replica-v2-{first.ds}")
    calls = {
        "power_off": lambda: d.power_off("VDI-001"),
        "revert": lambda: d.revert("VDI-001", first.checkpoint),
        "relink": lambda: d.relink("VDI-001", replica2),
        "customize": lambda: d.customize("VDI-001", CustomizationSpec("VDI-001")),
        "checkpoint": lambda: d.checkpoint("VDI-001"),
        "power_on": lambda: d.power_on("VDI-001"),
    }
    # A rebuild, as recompose does it, up to the broken call.
    order = ["power_off", "relink", "customize", "checkpoint", "power_on"]
    if method == "revert":
        order = ["power_off", "revert", "power_on"]
    for step in order[: order.index(method)]:
        calls[step]()
    before = d.get_vm("VDI-001")
    peer.fail("VDI-001", method)
    with pytest.raises(DriverError):
        calls[method]()
    after = assert_usable(peer, "VDI-001", "VDI-001-pd")
    assert (after.replica, after.power) == (before.replica, before.power), method
    peer.heal("VDI-001", method)
    for step in order[order.index(method) :]:
        calls[step]()
    vm = assert_usable(peer, "VDI-001", "VDI-001-pd")
    assert vm.power == POWER_ON
    if method != "revert":
        assert vm.replica == replica2.name and vm.checkpoint
