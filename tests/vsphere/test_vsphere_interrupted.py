"""A recompose that vCenter fails at each of its steps in turn: the desktop is left with its
system disk and its persistent disk attached, in Error with the reason, and running the
recompose again completes it. The faults come from vCenter itself (the simulator refuses
the step's method on that VM), and the desktop is read back with plain pyvmomi."""

import pytest

from composer import services
from composer.models import Operation
from pools.models import Desktop, Pool
from pools.states import DesktopState
from tests.worker_processes import errors, finish, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status

# The recompose's steps and the vCenter method each one calls on the desktop's VM.
FAULTS = [
    ("power_off", "PowerOffVM_Task"),
    ("relink", "RemoveAllSnapshots_Task"),
    ("relink", "ReconfigVM_Task"),  # the one reconfiguration that swaps the system disk
    ("customize", "CustomizeVM_Task"),
    ("checkpoint", "CreateSnapshot_Task"),
    ("power", "PowerOnVM_Task"),
]


def recompose(users, pool, desktop, version):
    operation = services.plan_operation(
        users["admin"], pool, "recompose", [desktop], extra={"image_version": version.pk}
    )
    services.approve(users["admin"], operation)
    return finish(operation)


def test_a_recompose_failed_at_any_step_leaves_a_usable_desktop_that_a_rerun_completes(
    users, vsphere_lab
):
    lab = vsphere_lab
    worker = start_worker(env=lab.env)
    try:
        operation = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="IR",
                naming_pattern="IR-{n:fixed=2}",
                size=2,
                datastores=[lab.ds["LocalDS_0"]],
                image_version=lab.v1,
                overcommit=4,
                persistent_disk_mb=GIB,
            ),
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        pool = Pool.objects.get(name="IR")
        target = Desktop.objects.get(name="IR-01")
        disk = "[LocalDS_0] vdiportal-disks/IR-01-pd.vmdk"
        versions = [lab.v2, lab.v1]
        for round_, (step, method) in enumerate(FAULTS):
            version = versions[round_ % 2]
            before = lab.vc.folder_vms()["IR-01"]
            lab.sim.fail("IR-01", method)
            operation = recompose(users, pool, target, version)
            assert operation.status == Status.FAILED, (method, errors(operation))
            task = operation.tasks.get()
            assert task.step == step, (method, errors(operation))
            assert "MethodDisabled" in task.error, task.error

            # Read from vCenter: a system disk, the persistent disk attached, nothing lost.
            vm = lab.vc.folder_vms()["IR-01"]
            assert len(vm.system_disks) == 1, (method, vm.disks)
            assert vm.persistent_disks == [disk], (method, vm.disks)
            assert lab.vc.disk_files()["IR-01-pd"] == "LocalDS_0"
            if step in ("power_off", "relink"):
                # Failed before or within the swap: the old system disk is still the one.
                assert vm.system_disks == before.system_disks, method
            desktop = Desktop.objects.get(pk=target.pk)
            assert desktop.state == DesktopState.ERROR and method in desktop.reason

            # vCenter works again: the same recompose, run again, completes the desktop.
            lab.sim.heal("IR-01", method)
            operation = recompose(users, pool, target, version)
            assert operation.status == Status.SUCCEEDED, (method, errors(operation))
            vm = lab.vc.folder_vms()["IR-01"]
            assert vm.power == "poweredOn" and vm.snapshots == ["vdiportal-checkpoint"]
            assert vm.persistent_disks == [disk] and len(vm.system_disks) == 1
            assert vm.extra["vdiportal.replica"] == f"replica-{version.pk}-LocalDS_0"
            desktop = Desktop.objects.get(pk=target.pk)
            assert desktop.state == DesktopState.AVAILABLE and desktop.image_version == version
        # The other desktop was never touched.
        assert Desktop.objects.get(name="IR-02").state == DesktopState.AVAILABLE
    finally:
        stop(worker)
