"""The simulated hypervisor: shared state in Redis, space accounting, failures, concurrency."""

import threading
import time

import pytest

from composer.drivers.base import (
    POWER_OFF,
    POWER_ON,
    CustomizationSpec,
    DriverError,
    ImageRef,
    InsufficientSpace,
    InvalidPowerState,
    NotFound,
)
from composer.drivers.simulator import CLONE_DELTA_MB, CUSTOMIZE_DELTA_MB, SimulatorDriver

IMAGE = ImageRef(parent_vm="win11-gold", snapshot="v1", disk_mb=40_000, used_mb=10_000)
SPEC = CustomizationSpec(computer_name="VDI-001", domain="corp.example")


@pytest.fixture
def sim(redis_conn):
    driver = SimulatorDriver(redis_conn, namespace="t")
    driver.add_datastore("ds1", capacity_mb=100_000)
    driver.add_datastore("ds2", capacity_mb=50_000)
    driver.add_parent_vm("win11-gold", ["v1", "v2"])
    return driver


def free(sim, datastore):
    return {ds.name: ds.free_mb for ds in sim.datastores()}[datastore]


def provisioned(sim, name="VDI-001", datastore="ds1"):
    replica = sim.clone_replica(IMAGE, datastore, f"replica-{datastore}")
    sim.create_linked_clone(name, replica, datastore)
    sim.customize(name, SPEC)
    return replica, sim.checkpoint(name)


def run_threads(count, target):
    """Start count threads at the same moment; return what each one returned or raised."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def worker(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as error:  # the caller inspects what was raised
            results[i] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_drivers_on_the_same_redis_see_the_same_hypervisor(sim, redis_conn):
    other = SimulatorDriver(redis_conn, namespace="t")
    provisioned(sim)
    assert other.get_vm("VDI-001") == sim.get_vm("VDI-001")
    assert other.inventory() == sim.inventory()
    other.power_on("VDI-001")
    assert sim.get_vm("VDI-001").power == POWER_ON


def test_namespaces_are_separate_hypervisors(sim, redis_conn):
    other = SimulatorDriver(redis_conn, namespace="elsewhere")
    assert other.datastores() == []
    with pytest.raises(NotFound):
        other.get_vm("win11-gold")


def test_provisioning_flow_accounts_space_at_every_step(sim):
    assert free(sim, "ds1") == 100_000

    replica = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    assert replica.size_mb == 10_000
    assert replica.datastore == "ds1"
    assert free(sim, "ds1") == 90_000
    assert sim.get_vm("replica-ds1").kind == "replica"

    clone = sim.create_linked_clone("VDI-001", replica, "ds1")
    assert (clone.kind, clone.power, clone.replica) == ("clone", POWER_OFF, "replica-ds1")
    assert clone.delta_mb == CLONE_DELTA_MB
    assert clone.ref.startswith("sim-vm-")
    assert free(sim, "ds1") == 90_000 - CLONE_DELTA_MB

    sim.customize("VDI-001", SPEC)
    after_customize = 90_000 - CLONE_DELTA_MB - CUSTOMIZE_DELTA_MB
    assert free(sim, "ds1") == after_customize

    checkpoint = sim.checkpoint("VDI-001")
    assert sim.get_vm("VDI-001").checkpoint == checkpoint
    assert free(sim, "ds1") == after_customize

    sim.power_on("VDI-001")
    vm = sim.get_vm("VDI-001")
    assert vm.power == POWER_ON
    assert vm.ref == clone.ref
    assert free(sim, "ds1") == after_customize
    assert free(sim, "ds2") == 50_000
    assert [call for call, _ in sim.call_log()] == [
        "clone_replica",
        "create_linked_clone",
        "customize",
        "checkpoint",
        "power_on",
    ]


def test_revert_restores_delta_and_free_space_and_powers_off(sim):
    _, checkpoint = provisioned(sim)
    delta = sim.get_vm("VDI-001").delta_mb
    before = free(sim, "ds1")
    sim.power_on("VDI-001")
    sim.start_session("VDI-001", "alice")
    sim.simulate_usage("VDI-001", 3_000)
    assert sim.get_vm("VDI-001").delta_mb == delta + 3_000
    assert free(sim, "ds1") == before - 3_000

    sim.revert("VDI-001", checkpoint)
    vm = sim.get_vm("VDI-001")
    assert vm.delta_mb == delta
    assert vm.power == POWER_OFF
    assert vm.session_user == ""
    assert free(sim, "ds1") == before


def test_revert_to_an_unknown_checkpoint_is_not_found(sim):
    _, checkpoint = provisioned(sim)
    newer = sim.checkpoint("VDI-001")
    with pytest.raises(NotFound):
        sim.revert("VDI-001", "no-such-checkpoint")
    if newer != checkpoint:  # a new checkpoint replaces the older one
        with pytest.raises(NotFound):
            sim.revert("VDI-001", checkpoint)


def test_customize_needs_power_off(sim):
    provisioned(sim)
    sim.power_on("VDI-001")
    with pytest.raises(InvalidPowerState):
        sim.customize("VDI-001", CustomizationSpec(computer_name="OTHER"))


def test_failure_by_name_and_step_hits_only_that_call_and_changes_nothing(sim, redis_conn):
    replica = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    sim.create_linked_clone("VDI-001", replica, "ds1")
    sim.create_linked_clone("VDI-002", replica, "ds1")
    # Set from another driver instance: failures are shared through Redis.
    SimulatorDriver(redis_conn, namespace="t").fail_desktop("VDI-001", "customize")
    before = sim.inventory()

    with pytest.raises(DriverError, match="simulated failure: customize on VDI-001"):
        sim.customize("VDI-001", SPEC)
    assert sim.inventory() == before

    sim.checkpoint("VDI-001")  # another step on that VM works
    sim.customize("VDI-002", CustomizationSpec(computer_name="VDI-002"))  # another VM works

    sim.clear_failures()
    sim.customize("VDI-001", SPEC)
    assert sim.get_vm("VDI-001").delta_mb == CLONE_DELTA_MB + CUSTOMIZE_DELTA_MB


def test_failure_by_name_without_step_fails_every_mutating_call(sim):
    replica = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    sim.fail_desktop("VDI-001")
    with pytest.raises(DriverError, match="simulated failure: create_linked_clone"):
        sim.create_linked_clone("VDI-001", replica, "ds1")
    with pytest.raises(NotFound):
        sim.get_vm("VDI-001")
    sim.create_linked_clone("VDI-002", replica, "ds1")


def test_fail_rate_one_fails_everything_and_zero_nothing(redis_conn):
    sim = SimulatorDriver(redis_conn, namespace="t", seed=1)
    sim.add_datastore("ds1", 100_000)
    sim.add_parent_vm("win11-gold", ["v1"])
    sim.set_fail_rate(1.0)
    for i in range(5):
        with pytest.raises(DriverError, match="simulated failure"):
            sim.clone_replica(IMAGE, "ds1", f"replica-{i}")
    assert free(sim, "ds1") == 100_000
    sim.set_fail_rate(0.0)
    for i in range(5):
        sim.clone_replica(IMAGE, "ds1", f"replica-{i}")
    assert free(sim, "ds1") == 50_000


def test_a_fail_rate_spares_the_methods_it_is_told_to(redis_conn):
    sim = SimulatorDriver(redis_conn, namespace="t", seed=1)
    sim.add_datastore("ds1", 100_000)
    sim.add_parent_vm("win11-gold", ["v1"])
    sim.set_fail_rate(1.0, sparing=["clone_replica"])
    replica = sim.clone_replica(IMAGE, "ds1", "replica-1")
    with pytest.raises(DriverError, match="simulated failure: create_linked_clone"):
        sim.create_linked_clone("VDI-001", replica, "ds1")
    sim.clear_failures()
    sim.create_linked_clone("VDI-001", replica, "ds1")


def test_insufficient_space_names_the_numbers_and_changes_nothing(sim):
    replica = sim.clone_replica(IMAGE, "ds2", "replica-ds2")
    sim.create_linked_clone("VDI-001", replica, "ds2")
    sim.simulate_usage("VDI-001", 39_900)
    before = sim.inventory()
    free_mb = free(sim, "ds2")
    assert free_mb < CUSTOMIZE_DELTA_MB

    with pytest.raises(InsufficientSpace) as raised:
        sim.customize("VDI-001", SPEC)
    message = str(raised.value)
    assert "ds2" in message
    assert str(CUSTOMIZE_DELTA_MB) in message
    assert str(free_mb) in message
    assert sim.inventory() == before

    with pytest.raises(InsufficientSpace):
        sim.create_disk("disk-001", "ds2", 1_000)
    assert sim.inventory() == before


def test_racing_threads_never_overcommit_a_datastore(sim):
    replica = sim.clone_replica(IMAGE, "ds2", "replica-ds2")
    room_for_five = 40_000 - 5 * CLONE_DELTA_MB
    sim.create_disk("filler", "ds2", room_for_five)
    assert free(sim, "ds2") == 5 * CLONE_DELTA_MB

    results = run_threads(20, lambda i: sim.create_linked_clone(f"VDI-{i:03}", replica, "ds2"))

    created = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(created) == 5
    assert all(isinstance(r, InsufficientSpace) for r in refused)
    assert free(sim, "ds2") == 0
    clones = [vm for vm in sim.inventory().vms if vm.kind == "clone"]
    assert sorted(vm.name for vm in clones) == sorted(vm.name for vm in created)


def test_clone_replica_is_idempotent(sim):
    first = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    assert sim.clone_replica(IMAGE, "ds1", "replica-ds1") == first
    assert free(sim, "ds1") == 90_000
    with pytest.raises(DriverError, match="already in use"):
        sim.clone_replica(IMAGE, "ds2", "replica-ds1")
    assert free(sim, "ds2") == 50_000


def test_clone_replica_needs_the_parent_and_snapshot(sim):
    with pytest.raises(NotFound):
        sim.clone_replica(ImageRef("no-such-vm", "v1", 1, 1), "ds1", "r1")
    with pytest.raises(NotFound):
        sim.clone_replica(ImageRef("win11-gold", "v9", 1, 1), "ds1", "r1")
    assert free(sim, "ds1") == 100_000


def test_create_linked_clone_is_idempotent_and_checks_names(sim):
    replica = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    first = sim.create_linked_clone("VDI-001", replica, "ds1")
    assert sim.create_linked_clone("VDI-001", replica, "ds1") == first
    assert free(sim, "ds1") == 90_000 - CLONE_DELTA_MB
    with pytest.raises(DriverError, match="already in use"):
        sim.create_linked_clone("replica-ds1", replica, "ds1")


def test_create_linked_clone_needs_its_replica_on_its_datastore(sim):
    replica = sim.clone_replica(IMAGE, "ds1", "replica-ds1")
    with pytest.raises(DriverError):
        sim.create_linked_clone("VDI-001", replica, "ds2")
    sim.delete_replica("replica-ds1")
    with pytest.raises(NotFound):
        sim.create_linked_clone("VDI-001", replica, "ds1")
    assert [vm.name for vm in sim.inventory().vms] == ["win11-gold"]


def test_create_disk_is_idempotent(sim):
    first = sim.create_disk("disk-001", "ds1", 2_000)
    assert sim.create_disk("disk-001", "ds1", 2_000) == first
    assert free(sim, "ds1") == 98_000


def test_delete_vm_refuses_while_persistent_disks_are_attached(sim):
    provisioned(sim)
    sim.create_disk("disk-001", "ds1", 2_000)
    sim.attach_disk("VDI-001", "disk-001", "ds1")
    before = free(sim, "ds1")

    with pytest.raises(DriverError, match="disk-001"):
        sim.delete_vm("VDI-001")
    assert sim.get_vm("VDI-001").disks == ("disk-001",)

    sim.detach_disk("VDI-001", "disk-001")
    sim.detach_disk("VDI-001", "disk-001")  # idempotent
    sim.delete_vm("VDI-001")
    sim.delete_vm("VDI-001")  # missing is not an error
    assert free(sim, "ds1") == before + CLONE_DELTA_MB + CUSTOMIZE_DELTA_MB
    (disk,) = sim.inventory().disks
    assert (disk.name, disk.attached_to, disk.size_mb) == ("disk-001", "", 2_000)


def test_disks_move_only_when_detached(sim):
    provisioned(sim)
    sim.create_disk("disk-001", "ds1", 2_000)
    sim.attach_disk("VDI-001", "disk-001", "ds1")
    with pytest.raises(DriverError):
        sim.move_disk("disk-001", "ds1", "ds2")
    with pytest.raises(DriverError):
        sim.delete_disk("disk-001", "ds1")
    sim.detach_disk("VDI-001", "disk-001")
    sim.move_disk("disk-001", "ds1", "ds2")
    sim.move_disk("disk-001", "ds1", "ds2")  # a retry finds it moved
    assert free(sim, "ds2") == 48_000
    with pytest.raises(NotFound, match="not found on ds1"):
        sim.attach_disk("VDI-001", "disk-001", "ds1")  # not where the caller said
    sim.delete_disk("disk-001", "ds1")  # not there: nothing to delete on ds1
    assert free(sim, "ds2") == 48_000
    sim.delete_disk("disk-001", "ds2")
    sim.delete_disk("disk-001", "ds2")
    assert free(sim, "ds2") == 50_000


def test_delete_replica_refuses_while_clones_use_it(sim):
    replica, _ = provisioned(sim)
    with pytest.raises(DriverError, match="VDI-001"):
        sim.delete_replica(replica.name)
    sim.delete_vm("VDI-001")
    sim.delete_replica(replica.name)
    sim.delete_replica(replica.name)  # missing is not an error
    assert free(sim, "ds1") == 100_000


def test_vanish_frees_space_and_detaches_disks(sim):
    provisioned(sim)
    sim.create_disk("disk-001", "ds1", 2_000)
    sim.attach_disk("VDI-001", "disk-001", "ds1")
    sim.vanish("VDI-001")
    with pytest.raises(NotFound):
        sim.get_vm("VDI-001")
    assert sim.inventory().disks[0].attached_to == ""
    assert free(sim, "ds1") == 100_000 - 10_000 - 2_000


def test_peak_in_flight_counts_overlapping_calls(redis_conn):
    sim = SimulatorDriver(redis_conn, namespace="t", step_seconds=0.05)
    sim.add_datastore("ds1", 100_000)
    sim.add_parent_vm("win11-gold", ["v1"])
    sim.reset_peak()

    run_threads(4, lambda i: sim.clone_replica(IMAGE, "ds1", f"replica-{i}"))

    assert sim.peak_in_flight() == 4
    assert sim.in_flight() == 0
    sim.reset_peak()
    assert sim.peak_in_flight() == 0


def test_step_seconds_delays_every_mutating_call(redis_conn):
    sim = SimulatorDriver(redis_conn, namespace="t", step_seconds=0.05)
    sim.add_datastore("ds1", 100_000)
    start = time.monotonic()
    sim.create_disk("disk-001", "ds1", 100)
    assert time.monotonic() - start >= 0.05


def test_reset_forgets_the_namespace_only(sim, redis_conn):
    other = SimulatorDriver(redis_conn, namespace="other")
    other.add_datastore("ds9", 1_000)
    provisioned(sim)
    sim.reset()
    assert sim.inventory().vms == []
    assert sim.call_log() == []
    assert [ds.name for ds in other.datastores()] == ["ds9"]


def test_calls_on_one_vm_at_the_same_moment_are_recorded_as_overlapping(redis_conn):
    # What the resilience tests rely on to see two operations working on one desktop.
    sim = SimulatorDriver(redis_conn, namespace="t", step_seconds=0.2)
    sim.add_datastore("ds1", capacity_mb=100_000)
    sim.add_parent_vm("win11-gold", ["v1"])
    provisioned(sim, "VDI-001")
    provisioned(sim, "VDI-002")
    assert sim.overlapping_calls() == []

    run_threads(2, lambda i: sim.power_on(f"VDI-00{i + 1}"))  # two VMs: fine
    assert sim.overlapping_calls() == []
    run_threads(2, lambda i: sim.power_off("VDI-001"))  # one VM, twice at once
    assert sim.overlapping_calls() == [("power_off", "VDI-001")]


def test_a_new_snapshot_of_a_golden_image_can_be_registered(sim):
    # What an image build leaves on the hypervisor (`manage.py simulator snapshot`).
    with pytest.raises(NotFound):
        sim.describe_image("win11-gold", "v3")
    sim.add_snapshot("win11-gold", "v3")
    assert sim.describe_image("win11-gold", "v3").snapshot == "v3"
    with pytest.raises(DriverError, match="already has"):
        sim.add_snapshot("win11-gold", "v3")
    with pytest.raises(NotFound):
        sim.add_snapshot("no-such-gold", "v1")
