"""Finding places in vCenter as administrators name them (lookup.py), and test connection
saying what it checked, on layouts the tests build with plain pyvmomi."""

import tempfile

import pytest
from pyVmomi import vim

from composer.drivers.base import DriverError, ImageRef, NotFound, ReplicaInfo
from composer.drivers.vsphere import VSphereDriver
from tests.vsphere import vcsim
from tests.vsphere.layouts import nest_datacenter
from tests.vsphere.test_vsphere_driver import config


def test_a_datacenter_in_nested_folders_by_path_or_by_name(start_vcsim):
    sim = start_vcsim(folder=True)
    reader = vcsim.Reader(sim)
    nest_datacenter(reader, "Europe", "West")
    for spec in ("/F0/Europe/West/DC0", "F0/Europe/West/DC0", "DC0", ""):
        message = VSphereDriver(config(sim, datacenter=spec)).test_connection()
        assert "datacenter /F0/Europe/West/DC0;" in message, spec
    with pytest.raises(NotFound, match="datacenter DC9 not found in vCenter"):
        VSphereDriver(config(sim, datacenter="DC9")).test_connection()
    # A second datacenter of the same name elsewhere: the name alone is refused, with both
    # paths; no name at all is refused too, since nothing says which of the two.
    other = reader.content.rootFolder.CreateFolder(name="Asia")
    other.CreateDatacenter(name="DC0")
    with pytest.raises(DriverError) as refused:
        VSphereDriver(config(sim, datacenter="DC0")).test_connection()
    assert str(refused.value) == (
        "2 objects named DC0 in vCenter: /Asia/DC0, /F0/Europe/West/DC0; "
        "give the endpoint the inventory path of the one to use"
    )
    with pytest.raises(DriverError, match="vCenter has 2 datacenters .*; name one"):
        VSphereDriver(config(sim)).test_connection()
    reader.close()


def test_test_connection_checks_cluster_pool_host_and_folder_and_creates_nothing(start_vcsim):
    sim = start_vcsim(standalone=1)
    reader = vcsim.Reader(sim)
    cluster = reader.cluster
    cluster.resourcePool.CreateResourcePool(
        name="VDI",
        spec=vim.ResourceConfigSpec(
            cpuAllocation=vim.ResourceAllocationInfo(
                reservation=0,
                limit=-1,
                expandableReservation=True,
                shares=vim.SharesInfo(level="normal"),
            ),
            memoryAllocation=vim.ResourceAllocationInfo(
                reservation=0,
                limit=-1,
                expandableReservation=True,
                shares=vim.SharesInfo(level="normal"),
            ),
        ),
    )
    reader.make_folder("VDI/Pools")

    # Blank cluster: the only cluster, not the standalone host beside it.
    message = VSphereDriver(config(sim)).test_connection()
    assert "cluster /DC0/host/DC0_C0 (DRS places VMs)" in message
    message = VSphereDriver(
        config(
            sim, cluster="DC0_C0", resource_pool="VDI", esx_host="DC0_C0_H1", vm_folder="VDI/Pools"
        )
    ).test_connection()
    assert "cluster /DC0/host/DC0_C0 on host(s) DC0_C0_H1, resource pool VDI" in message
    assert message.endswith("folder /DC0/vm/VDI/Pools exists.")

    with pytest.raises(NotFound, match="cluster or host C9 not found in datacenter DC0"):
        VSphereDriver(config(sim, cluster="C9")).test_connection()
    with pytest.raises(NotFound, match="resource pool Nope not found in /DC0/host/DC0_C0"):
        VSphereDriver(config(sim, resource_pool="Nope")).test_connection()
    with pytest.raises(NotFound, match="host H9 not found in /DC0/host/DC0_C0"):
        VSphereDriver(config(sim, esx_host="H9")).test_connection()
    # A missing folder the endpoint may not create is an error, named by its full path.
    with pytest.raises(NotFound, match="VM folder /DC0/vm/VDI/Other does not exist"):
        VSphereDriver(config(sim, vm_folder="VDI/Other", create_folder=False)).test_connection()
    # With creation allowed, test connection still creates nothing.
    message = VSphereDriver(config(sim, vm_folder="VDI/Other/Deep")).test_connection()
    assert message.endswith("folder VDI/Other/Deep does not exist yet: created on first use.")
    assert reader.find("vm/VDI/Other") is None

    # A second cluster: a blank cluster is now ambiguous.
    reader.dc.hostFolder.CreateClusterEx(name="C2", spec=vim.cluster.ConfigSpecEx())
    with pytest.raises(DriverError, match=r"has 2 clusters \(/DC0/host/C2, /DC0/host/DC0_C0\)"):
        VSphereDriver(config(sim)).test_connection()
    reader.close()


def test_the_folder_is_made_along_its_path_on_first_use(start_vcsim):
    sim = start_vcsim()
    reader = vcsim.Reader(sim)
    reader.snapshot_parent(vcsim.PARENT_VM, "v1")
    driver = VSphereDriver(config(sim, vm_folder="VDI/Pools/Finance"))
    driver.clone_replica(ImageRef(vcsim.PARENT_VM, "v1", 1, 1), "LocalDS_0", "r1")
    folder = reader.find("vm/VDI/Pools/Finance")
    assert isinstance(folder, vim.Folder) and [vm.name for vm in folder.childEntity] == ["r1"]
    assert reader.find("vm/VDI/Pools/Finance/r1") is not None
    assert reader.find("vm/VDI%2fPools%2fFinance") is None  # no folder named with slashes
    reader.close()


def test_a_datastore_not_mounted_on_the_cluster_is_refused_before_cloning(start_vcsim):
    sim = start_vcsim(standalone=1)
    reader = vcsim.Reader(sim)
    reader.snapshot_parent(vcsim.PARENT_VM, "v1")
    standalone = next(
        c for c in reader._all(vim.ComputeResource) if not isinstance(c, vim.ClusterComputeResource)
    )
    standalone.host[0].configManager.datastoreSystem.CreateLocalDatastore(
        name="OnlyOnH0", path=tempfile.mkdtemp()
    )
    driver = VSphereDriver(config(sim))
    assert "2 of 3 datastore(s) mounted there (not OnlyOnH0);" in driver.test_connection()
    with pytest.raises(
        DriverError, match="datastore OnlyOnH0 is not mounted on cluster /DC0/host/DC0_C0"
    ):
        driver.clone_replica(ImageRef(vcsim.PARENT_VM, "v1", 1, 1), "OnlyOnH0", "r1")
    replica = driver.clone_replica(ImageRef(vcsim.PARENT_VM, "v1", 1, 1), "LocalDS_0", "r2")
    with pytest.raises(DriverError, match="not mounted"):
        driver.create_linked_clone("VDI-001", replica, "OnlyOnH0")
    assert reader.vm_object("r1") is None and reader.vm_object("VDI-001") is None
    assert isinstance(replica, ReplicaInfo)
    reader.close()
