"""vCenter stalls for two minutes in the middle of a recompose (the simulator's process is
stopped with SIGSTOP, so connections hang as they do when vCenter freezes), then carries on:
every desktop ends Available with its persistent disk attached, with nobody doing anything."""

import os
import signal
import time

import pytest

from composer import services
from composer.models import DesktopTask, Operation
from pools.models import Desktop, Pool
from pools.states import DesktopState
from tests.worker_processes import errors, finish, start_worker, stop, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024
Status = Operation.Status
FREEZE_SECONDS = 120


# Customization takes a while, so the recompose is still under way when vCenter freezes;
# each API call is given up after 10 s (the endpoint's task timeout caps the call timeout).
@pytest.mark.vcsim(method_delay={"CustomizeVM_Task": 1500}, timeout=10)
def test_vcenter_frozen_mid_recompose_then_back_every_desktop_ends_available(users, vsphere_lab):
    lab = vsphere_lab
    worker = start_worker(env=lab.env, scheduler=True)
    try:
        operation = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="FZ",
                naming_pattern="FZ-{n:fixed=2}",
                size=4,
                datastores=[lab.ds["LocalDS_0"], lab.ds["LocalDS_1"]],
                image_version=lab.v1,
                overcommit=4,
                persistent_disk_mb=GIB,
            ),
        )
        assert finish(operation).status == Status.SUCCEEDED, errors(operation)
        pool = Pool.objects.get(name="FZ")
        operation = services.plan_operation(
            users["admin"], pool, "recompose", extra={"image_version": lab.v2.pk}
        )
        services.approve(users["admin"], operation)
        # Mid-recompose: some desktop is past the swap of its system disk, some is not done.
        wait_for(
            lambda: operation.tasks.filter(step__in=["customize", "checkpoint", "power"]).exists(),
            interval=0.02,
        )
        assert operation.tasks.exclude(status=DesktopTask.Status.SUCCEEDED).exists()
        os.kill(lab.sim.process.pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_SECONDS)
            waiting = operation.tasks.filter(status=DesktopTask.Status.WAITING)
            # While it is down the desktops wait for it, they do not fail.
            assert not operation.tasks.filter(status=DesktopTask.Status.FAILED).exists()
            assert waiting.exists() and "not answering" in waiting.first().error
        finally:
            os.kill(lab.sim.process.pid, signal.SIGCONT)
        finish(operation, timeout=300)
    finally:
        stop(worker)
    assert operation.status == Status.SUCCEEDED, errors(operation)
    vms = lab.vc.folder_vms()
    for desktop in Desktop.objects.filter(pool=pool).select_related("datastore"):
        vm = vms[desktop.name]
        assert desktop.state == DesktopState.AVAILABLE, (desktop.name, desktop.reason)
        assert vm.power == "poweredOn" and vm.snapshots == ["vdiportal-checkpoint"]
        assert vm.extra["vdiportal.replica"] == f"replica-{lab.v2.pk}-{desktop.datastore.name}"
        assert len(vm.system_disks) == 1
        ds = desktop.datastore.name
        assert vm.persistent_disks == [f"[{ds}] vdiportal-disks/{desktop.name}-pd.vmdk"]
