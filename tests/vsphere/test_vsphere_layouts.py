"""The whole admin flow on vCenter estates laid out unlike the simulator's default
(tests/vsphere/layouts.py): provision 8, refresh 2, recompose, rebalance off one datastore,
power, delete keeping disks; after each step vCenter's side is read back with plain pyvmomi."""

import pytest
from pyVmomi import vim

from composer import endpoint_drivers, services
from composer.drivers.base import DriverError
from composer.inventory import sync_datastores
from composer.models import Operation
from pools.models import BaseImage, Desktop, ImageVersion, PersistentDisk, Pool, PoolDatastore
from pools.states import DesktopState
from tests.vsphere import layouts, vcsim
from tests.vsphere.conftest import PASSWORD_ENV, make_endpoint
from tests.worker_processes import errors, finish, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status


@pytest.fixture(params=sorted(layouts.LAYOUTS))
def estate(request, db, redis_conn, start_vcsim, monkeypatch):
    layout = layouts.LAYOUTS[request.param]
    sim = start_vcsim(**layout.sim_options)
    monkeypatch.setenv(PASSWORD_ENV, vcsim.PASSWORD)
    endpoint_drivers.close_sessions()
    reader = vcsim.Reader(sim, folder=layout.folder)
    for prepare in layout.prepare:
        prepare(reader)
    endpoint = make_endpoint(sim, **layout.endpoint)
    yield layout, sim, endpoint, reader
    reader.close()
    endpoint_drivers.close_sessions()


def register_image(endpoint, parent: str) -> tuple[ImageVersion, ImageVersion]:
    """As an administrator registers a golden image: the driver checks each snapshot and
    reads the ids and sizes from vCenter."""
    driver = endpoint_drivers.for_endpoint(endpoint)
    v1, v2 = (driver.describe_image(parent, s) for s in ("v1", "v2"))
    image = BaseImage.objects.create(
        endpoint=endpoint, name="Win11", parent_vm=parent, parent_ref=v1.parent_ref
    )
    return tuple(
        ImageVersion.objects.create(
            image=image,
            snapshot=ref.snapshot,
            snapshot_ref=ref.snapshot_ref,
            disk_mb=ref.disk_mb,
            used_mb=ref.used_mb,
        )
        for ref in (v1, v2)
    )


def check_vcenter(reader, layout, pool, version):
    """Every desktop, read from vCenter: a linked clone in the portal's folder, its system
    disk on its datastore and on the image's controller, linked to the version's replica
    there, powered as its state says, with its checkpoint and its persistent disk attached."""
    vms = reader.folder_vms()
    files = reader.disk_files()
    for desktop in Desktop.objects.filter(pool=pool).select_related("datastore", "replica"):
        name, ds = desktop.name, desktop.datastore.name
        vm = vms[name]
        assert desktop.state in (DesktopState.AVAILABLE, DesktopState.PROVISIONED), (
            name,
            desktop.state,
            desktop.reason,
        )
        assert vm.power == (
            "poweredOn" if desktop.state == DesktopState.AVAILABLE else "poweredOff"
        )
        assert [d.partition("]")[0][1:] for d in vm.system_disks] == [ds], (name, vm.disks)
        assert vm.extra["vdiportal.replica"] == desktop.replica.name
        assert desktop.replica.image_version_id == version.pk
        assert vm.snapshots == ["vdiportal-checkpoint"]
        assert vm.persistent_disks == [f"[{ds}] vdiportal-disks/{name}-pd.vmdk"]
        assert files[f"{name}-pd"] == ds
        if layout.bus:
            buses = controllers_of(reader, name)
            assert buses and set(buses) == {layout.bus}, (name, buses)


def controllers_of(reader, name) -> list[str]:
    """The bus of each disk of VM `name`, read from vCenter."""
    vm = reader.vm_object(name)
    by_key = {d.key: d for d in vm.config.hardware.device}
    kinds = {
        vim.vm.device.VirtualNVMEController: "nvme",
        vim.vm.device.VirtualSATAController: "sata",
        vim.vm.device.VirtualSCSIController: "scsi",
    }
    return [
        next(word for kind, word in kinds.items() if isinstance(by_key[d.controllerKey], kind))
        for d in vm.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualDisk)
    ]


def test_the_admin_flow_on_every_layout(users, estate):
    layout, sim, endpoint, reader = estate
    message = endpoint_drivers.for_endpoint(endpoint).test_connection()
    assert message.startswith("Connected to VMware vCenter Server"), message
    v1, v2 = register_image(endpoint, layout.parent)
    parent = (
        reader.find(layout.parent if layout.parent.startswith("/") else f"vm/{layout.parent}")
        or reader.vm_object(layout.parent)  # named by its name alone
    )
    assert v1.image.parent_ref == parent._moId
    assert v1.disk_mb == sum(
        d.capacityInKB // 1024
        for d in parent.config.hardware.device
        if isinstance(d, vim.vm.device.VirtualDisk)
    )
    assert v1.snapshot_ref != v2.snapshot_ref
    datastores = {ds.name: ds for ds in sync_datastores(endpoint)}
    worker = start_worker(env={PASSWORD_ENV: vcsim.PASSWORD})
    try:
        # -- provision 8 -------------------------------------------------------------------
        operation = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="L",
                naming_pattern="L-{n:fixed=2}",
                size=8,
                datastores=[datastores[n] for n in layout.pool_datastores],
                image_version=v1,
                overcommit=4,
                persistent_disk_mb=GIB,
            ),
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        pool = Pool.objects.get(name="L")
        check_vcenter(reader, layout, pool, v1)
        placed = {d.datastore.name for d in pool.desktops.select_related("datastore")}
        assert layout.vacate in placed  # so the rebalance below has work to do
        if layout.sim_options.get("drs") is False:
            # Without DRS the portal chose the hosts itself, within the named cluster.
            cluster_hosts = {h.name for h in reader.cluster.host}
            hosts = {reader.vm_object(d.name).runtime.host.name for d in pool.desktops.all()}
            assert hosts <= cluster_hosts and len(hosts) > 1, hosts

        # -- refresh 2 ---------------------------------------------------------------------
        for desktop in pool.desktops.all():
            reader.snapshot_parent(desktop.name, "user-changes")
        chosen = list(pool.desktops.order_by("name")[:2])
        operation = services.start_operation(users["admin"], pool, "refresh", chosen)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        vms = reader.folder_vms()
        for desktop in pool.desktops.all():
            expected = "vdiportal-checkpoint" if desktop in chosen else "user-changes"
            assert vms[desktop.name].current_snapshot == expected

        # -- recompose to v2 ---------------------------------------------------------------
        old = {n: vm.system_disks for n, vm in vms.items()}
        operation = services.plan_operation(
            users["admin"], pool, "recompose", extra={"image_version": v2.pk}
        )
        services.approve(users["admin"], operation)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        check_vcenter(reader, layout, pool, v2)
        vms = reader.folder_vms()
        assert all(vms[d.name].system_disks != old[d.name] for d in pool.desktops.all())

        # -- rebalance off one datastore ---------------------------------------------------
        disks_before = sorted(PersistentDisk.objects.values_list("pk", "name"))
        PoolDatastore.objects.filter(pool=pool, datastore__name=layout.vacate).update(
            selected=False
        )
        operation = services.plan_operation(users["admin"], pool, "rebalance")
        assert operation.plan["moves"]
        services.approve(users["admin"], operation)
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        check_vcenter(reader, layout, pool, v2)
        vms = reader.folder_vms()
        assert not [n for n, vm in vms.items() if any(f"[{layout.vacate}]" in d for d in vm.disks)]
        assert layout.vacate not in set(reader.disk_files().values())
        assert sorted(PersistentDisk.objects.values_list("pk", "name")) == disks_before

        # -- power: shut two down, start them again ----------------------------------------
        two = list(pool.desktops.order_by("name")[:2])
        operation = services.start_operation(
            users["admin"], pool, "power", two, extra={"action": "shutdown"}
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        check_vcenter(reader, layout, pool, v2)  # Provisioned is powered off in vCenter
        assert {d.state for d in Desktop.objects.filter(pk__in=[d.pk for d in two])} == {
            DesktopState.PROVISIONED
        }
        operation = services.start_operation(
            users["admin"], pool, "power", two, extra={"action": "start"}
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        check_vcenter(reader, layout, pool, v2)

        # -- delete the pool, keeping the persistent disks ---------------------------------
        kept = {name for _, name in disks_before}
        operation = services.start_operation(
            users["admin"], pool, "delete", extra={"keep_disks": True}
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
    finally:
        stop(worker)
    assert reader.folder_vms() == {}
    assert set(reader.disk_files()) == kept
    assert dict(PersistentDisk.objects.values_list("name", "datastore__name")) == {
        name: ds for name, ds in reader.disk_files().items()
    }


@pytest.mark.parametrize("estate", ["folders"], indirect=True)
def test_a_name_two_vms_share_is_refused_with_both_paths(estate):
    layout, sim, endpoint, reader = estate
    driver = endpoint_drivers.for_endpoint(endpoint)
    with pytest.raises(DriverError) as refused:
        driver.describe_image("DC0_C0_RP0_VM0", "v1")
    assert str(refused.value) == (
        "2 objects named DC0_C0_RP0_VM0 in datacenter DC0: "
        "/F0/West/DC0/vm/Archive/Old/DC0_C0_RP0_VM0, /F0/West/DC0/vm/F0/DC0_C0_RP0_VM0; "
        "give the endpoint the inventory path of the one to use"
    )
    # By path, each is found: the one the layout names is the golden image.
    ref = driver.describe_image(layout.parent, "v2")
    assert ref.parent_ref == reader.find(layout.parent)._moId
