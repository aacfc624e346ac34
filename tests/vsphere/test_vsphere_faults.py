"""Faults from a real vSphere API (govmomi's simulator), through the composer and a real RQ
worker: each ends with a clear error on the desktop concerned and nothing lost."""

import pytest

from composer import images, services
from composer.inventory import sync_endpoint
from composer.models import DesktopTask, Operation
from pools.models import Datastore, Desktop, HypervisorEndpoint, PersistentDisk, Pool
from pools.states import BUSY, DesktopState
from portal.pool_forms import PoolForm
from tests.vsphere import vcsim
from tests.worker_processes import finish, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status


def provision(users, lab, name, size, disk_mb=GIB):
    return services.create_pool(
        users["admin"],
        services.PoolSpec(
            name=name,
            naming_pattern=name + "-{n:fixed=2}",
            size=size,
            datastores=[lab.ds["LocalDS_0"], lab.ds["LocalDS_1"]],
            image_version=lab.v1,
            overcommit=4,
            persistent_disk_mb=disk_mb,
        ),
    )


def desktop(name):
    return Desktop.objects.get(name=name)


def assert_nothing_left_busy():
    assert not Desktop.objects.filter(state__in=BUSY).exists()
    assert not DesktopTask.objects.filter(status__in=DesktopTask.IN_FLIGHT).exists()


def test_a_name_taken_in_vcenter_fails_that_desktop_only(users, vsphere_lab):
    lab = vsphere_lab
    lab.vc.clone_into_folder("DC0_C0_RP0_VM0", "NT-02")  # someone else's VM, no marker
    worker = start_worker(env=lab.env)
    try:
        operation = finish(provision(users, lab, "NT", 3))
    finally:
        stop(worker)
    assert operation.status == Status.PARTIALLY_FAILED
    taken = desktop("NT-02")
    assert taken.state == DesktopState.ERROR
    assert "NT-02 is already taken in vCenter" in taken.reason
    assert "did not create" in taken.reason
    assert {desktop("NT-01").state, desktop("NT-03").state} == {DesktopState.AVAILABLE}
    # The other VM is left exactly as it was: not adopted, not renamed, not deleted.
    vm = lab.vc.folder_vms()["NT-02"]
    assert "vdiportal.kind" not in vm.extra and vm.snapshots == [] and vm.persistent_disks == []
    assert_nothing_left_busy()


def test_drift_a_vm_deleted_behind_the_portal_is_missing_and_a_stray_one_an_orphan(
    users, vsphere_lab
):
    lab = vsphere_lab
    worker = start_worker(env=lab.env)
    try:
        assert finish(provision(users, lab, "DR", 2, disk_mb=0)).status == Status.SUCCEEDED
        lab.vc.destroy("DR-01")
        lab.vc.clone_into_folder("DC0_C0_RP0_VM0", "GHOST-7", {"vdiportal.kind": "desktop"})
        lab.vc.clone_into_folder("DC0_C0_RP0_VM0", "NOT-OURS")  # no marker: none of ours

        report = sync_endpoint(lab.endpoint)
        assert report["missing"] == 1 and report["orphans"] == ["GHOST-7"]
        assert desktop("DR-01").missing and not desktop("DR-02").missing
        endpoint = HypervisorEndpoint.objects.get(pk=lab.endpoint.pk)
        assert endpoint.orphans == ["GHOST-7"] and endpoint.synced_at and not endpoint.sync_error

        # Refreshing the vanished desktop fails on it with a reason, and touches nothing else.
        pool = Pool.objects.get(name="DR")
        operation = services.start_operation(users["admin"], pool, "refresh")
        assert finish(operation).status == Status.PARTIALLY_FAILED
    finally:
        stop(worker)
    gone = desktop("DR-01")
    assert gone.state == DesktopState.ERROR
    assert gone.reason == (
        "power_off: VM DR-01 not found in vCenter folder vdi-portal (deleted outside the portal?)"
    )
    assert desktop("DR-02").state == DesktopState.AVAILABLE
    assert "GHOST-7" in lab.vc.folder_vms()  # orphans are listed, never deleted by the portal
    assert_nothing_left_busy()


@pytest.mark.vcsim(method_delay={"CustomizeVM_Task": 1500})
def test_a_vm_powered_on_where_the_step_needs_it_off(users, vsphere_lab):
    lab = vsphere_lab
    worker = start_worker(env=lab.env)
    try:
        operation = provision(users, lab, "PW", 2)
        # While vCenter takes its time over the first customization, someone powers the
        # VM on in the vSphere client.
        task = wait_for(
            lambda: DesktopTask.objects.filter(operation=operation, step="customize").first(),
            interval=0.02,
        )
        lab.vc.power_on(task.desktop_name)
        finish(operation)
    finally:
        stop(worker)
    assert operation.status == Status.PARTIALLY_FAILED
    hit = desktop(task.desktop_name)
    assert hit.state == DesktopState.ERROR
    assert hit.reason.startswith("customize: customize " + task.desktop_name)
    assert "powered on" in hit.reason
    other = Desktop.objects.exclude(pk=hit.pk).get(pool__name="PW")
    assert other.state == DesktopState.AVAILABLE
    # Nothing lost: the VM is still there for a retry, as it was.
    assert lab.vc.folder_vms()[hit.name].power == "poweredOn"
    assert_nothing_left_busy()


@pytest.mark.vcsim(method_delay={"RevertToSnapshot_Task": 4000}, timeout=2)
def test_a_call_slower_than_the_timeout_is_tried_for_the_outage_window_then_fails(
    users, vsphere_lab
):
    lab = vsphere_lab
    worker = start_worker(env=lab.env, scheduler=True)
    try:
        assert finish(provision(users, lab, "TO", 2)).status == Status.SUCCEEDED
        pool = Pool.objects.get(name="TO")
        disks = sorted(PersistentDisk.objects.values_list("pk", "name", "desktop__name"))
        slow = desktop("TO-01")
        # vCenter answers the revert after 4 s, the portal waits 2 s for an answer: a silent
        # vCenter, tried again with back-off until the endpoint's outage window has passed.
        HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(outage_window_seconds=4)
        operation = finish(services.start_operation(users["admin"], pool, "refresh", [slow]))
        assert operation.status == Status.FAILED
        task = operation.tasks.get()
        assert task.attempts >= 2  # tried again before giving up
        slow.refresh_from_db()
        assert slow.state == DesktopState.ERROR
        assert slow.reason.startswith("revert: revert TO-01: vCenter did not answer in time (no")
        assert slow.reason.endswith("more than 4 s)")
        assert_nothing_left_busy()

        # With a timeout the delay fits in, the same refresh repairs the desktop.
        HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(
            settings=lab.endpoint.settings | {"task_timeout_seconds": 30}
        )
        operation = finish(services.start_operation(users["admin"], pool, "refresh", [slow]))
    finally:
        stop(worker)
    assert operation.status == Status.SUCCEEDED
    assert desktop("TO-01").state == DesktopState.AVAILABLE
    assert sorted(PersistentDisk.objects.values_list("pk", "name", "desktop__name")) == disks
    vms = lab.vc.folder_vms()
    assert [len(vms[n].persistent_disks) for n in ("TO-01", "TO-02")] == [1, 1]


def test_drift_a_datastore_removed_in_vcenter_is_marked_gone_and_not_offered(users, vsphere_lab):
    lab = vsphere_lab
    gone = next(ds for ds in lab.vc.dc.datastore if ds.name == "LocalDS_1")
    vcsim.wait(gone.Destroy_Task())  # removed in vCenter, behind the portal's back
    report = sync_endpoint(lab.endpoint)
    assert report["gone"] == 1
    row = Datastore.objects.get(name="LocalDS_1")
    assert row.gone and not Datastore.objects.get(name="LocalDS_0").gone
    offered = {ds.name for ds in PoolForm().fields["datastores"].queryset}
    assert offered == {"LocalDS_0"}
    # A version whose snapshot vCenter does not have is refused, naming what is missing.
    with pytest.raises(images.VersionRefused, match="snapshot v9 of DC0_C0_RP0_VM0 not found"):
        images.register_version(users["admin"], lab.v1.image, "v9")
