"""The whole life of a pool on vSphere: the real composer, a real RQ worker process, and
govmomi's vCenter simulator. After each operation the simulator's inventory, read back
with pyvmomi, shows what vCenter should hold."""

import pytest
from django.urls import reverse

from composer import services
from composer.models import HypervisorTask, Operation
from pools.models import Desktop, PersistentDisk, Pool, PoolDatastore
from pools.states import DesktopState
from tests.worker_processes import errors, finish, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status


def desktops_of(pool):
    return {d.name: d for d in Desktop.objects.filter(pool=pool).select_related("datastore")}


def replica_name(version, datastore):
    return f"replica-{version.pk}-{datastore}"


def assert_desktops_in_vcenter(lab, pool, version):
    """Every desktop of the pool is a powered-on linked clone in the portal's folder, on its
    datastore, linked to its version's replica there, with its checkpoint and its persistent
    disk attached; every replica it uses is a template with its snapshot."""
    vms = lab.vc.folder_vms()
    files = lab.vc.disk_files()
    for name, desktop in desktops_of(pool).items():
        vm = vms[name]
        ds = desktop.datastore.name
        assert desktop.state == DesktopState.AVAILABLE, (name, desktop.reason)
        assert vm.extra["vdiportal.kind"] == "desktop"
        assert vm.power == "poweredOn"
        # Where its own disks are: the simulator's VM-level datastore list only ever grows,
        # and its clones share the source's disk file name, so neither says where a VM is.
        assert [d.partition("]")[0][1:] for d in vm.system_disks] == [ds], (name, vm.disks)
        assert vm.extra["vdiportal.replica"] == replica_name(version, ds)
        assert vm.snapshots == ["vdiportal-checkpoint"]
        assert vm.persistent_disks == [f"[{ds}] vdiportal-disks/{name}-pd.vmdk"]
        assert files[f"{name}-pd"] == ds
        replica = vms[replica_name(version, ds)]
        assert replica.template and replica.snapshots == ["vdiportal-replica"]
        assert replica.extra["vdiportal.kind"] == "replica"
        assert desktop.driver_ref and desktop.checkpoint and desktop.image_version_id == version.pk


def test_pool_life_on_vsphere(users, vsphere_lab, client):
    lab = vsphere_lab
    worker = start_worker(env=lab.env)
    try:
        # -- provision 6 on two datastores -------------------------------------------------
        operation = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="VC",
                naming_pattern="VC-{n:fixed=2}",
                size=6,
                datastores=[lab.ds["LocalDS_0"], lab.ds["LocalDS_1"]],
                image_version=lab.v1,
                overcommit=4,
                persistent_disk_mb=GIB,
            ),
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        pool = Pool.objects.get(name="VC")
        assert_desktops_in_vcenter(lab, pool, lab.v1)
        vms = lab.vc.folder_vms()
        on = {
            ds: sorted(n for n, d in desktops_of(pool).items() if d.datastore.name == ds)
            for ds in ("LocalDS_0", "LocalDS_1")
        }
        assert len(on["LocalDS_0"]) + len(on["LocalDS_1"]) == 6 and all(on.values())
        assert sorted(n for n in vms if n.startswith("replica-")) == [
            replica_name(lab.v1, "LocalDS_0"),
            replica_name(lab.v1, "LocalDS_1"),
        ]
        disks_before = sorted(PersistentDisk.objects.values_list("pk", "name"))

        # -- refresh two: each goes back to its checkpoint ---------------------------------
        # Behind the portal, a snapshot on every desktop moves "current" off the checkpoint.
        for name in desktops_of(pool):
            lab.vc.snapshot_parent(name, "user-changes")
        chosen = [d for n, d in sorted(desktops_of(pool).items())][:2]
        operation = services.start_operation(users["admin"], pool, "refresh", chosen)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        vms = lab.vc.folder_vms()
        for name in desktops_of(pool):
            refreshed = name in {d.name for d in chosen}
            assert vms[name].current_snapshot == (
                "vdiportal-checkpoint" if refreshed else "user-changes"
            ), name
            assert vms[name].power == "poweredOn"
            assert len(vms[name].persistent_disks) == 1

        # -- recompose to v2 ---------------------------------------------------------------
        old_system_disks = {n: vms[n].system_disks for n in desktops_of(pool)}
        operation = services.plan_operation(
            users["admin"], pool, "recompose", extra={"image_version": lab.v2.pk}
        )
        # vCenter does not tell who is logged on: the form and the plan say so.
        client.force_login(users["admin"])
        unknown = "does not report who is logged on"
        form = client.get(reverse("pools:operate", args=[pool.pk, "refresh"]))
        assert unknown in form.content.decode()
        assert unknown in client.get(reverse("composer:plan", args=[operation.pk])).content.decode()
        services.approve(users["admin"], operation)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        assert_desktops_in_vcenter(lab, pool, lab.v2)
        vms = lab.vc.folder_vms()
        for name in desktops_of(pool):
            # A new delta disk, the same VM (the user-changes snapshot went with the old delta).
            assert vms[name].system_disks != old_system_disks[name]
            assert len(vms[name].system_disks) == 1
        # The v1 replicas nobody uses any more are gone.
        assert sorted(n for n in vms if n.startswith("replica-")) == [
            replica_name(lab.v2, "LocalDS_0"),
            replica_name(lab.v2, "LocalDS_1"),
        ]
        assert sorted(PersistentDisk.objects.values_list("pk", "name")) == disks_before

        # -- deselect LocalDS_1 and rebalance ----------------------------------------------
        PoolDatastore.objects.filter(pool=pool, datastore=lab.ds["LocalDS_1"]).update(
            selected=False
        )
        operation = services.plan_operation(users["admin"], pool, "rebalance")
        assert sorted(m["desktop"] for m in operation.plan["moves"]) == on["LocalDS_1"]
        services.approve(users["admin"], operation)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        assert_desktops_in_vcenter(lab, pool, lab.v2)
        vms = lab.vc.folder_vms()
        assert not [n for n in desktops_of(pool) if any("[LocalDS_1]" in d for d in vms[n].disks)]
        assert set(lab.vc.disk_files().values()) == {"LocalDS_0"}
        assert replica_name(lab.v2, "LocalDS_1") not in vms
        assert sorted(PersistentDisk.objects.values_list("pk", "name")) == disks_before

        # -- delete the pool, keeping the persistent disks ---------------------------------
        operation = services.start_operation(
            users["admin"], pool, "delete", extra={"keep_disks": True}
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        assert not Pool.objects.filter(name="VC").exists()
        assert lab.vc.folder_vms() == {}  # desktops and their replicas are gone
        kept = {name for _, name in disks_before}
        assert set(lab.vc.disk_files()) == kept  # every disk file is still there...
        assert (
            set(PersistentDisk.objects.filter(desktop=None).values_list("name", flat=True)) == kept
        )
        # ...where the portal recorded it, so attaching it later goes straight there.
        recorded = PersistentDisk.objects.values_list("name", "datastore__name")
        assert dict(recorded) == lab.vc.disk_files()
        assert not HypervisorTask.objects.exists()  # every task seen to its end
        # The worker kept one session for all its jobs: the test's own two, and its one.
        assert len(lab.vc.content.sessionManager.sessionList) == 3
    finally:
        stop(worker)
    # ...and logged it out when it stopped.
    assert len(lab.vc.content.sessionManager.sessionList) == 2
