"""`make run VCSIM=1`: the portal on a simulated vCenter (govmomi's vcsim) instead of the
Redis simulator, to see the vSphere driver at work without a vCenter.

The simulated vCenter lives in memory and starts empty each time, so the portal's rows for
its endpoint ("vcsim-demo") are cleared and made again at every start.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from composer.endpoint_drivers import for_endpoint
from composer.inventory import sync_datastores
from composer.models import DesktopTask
from composer.services import PoolSpec, create_pool
from pools.models import (
    BaseImage,
    Datastore,
    Desktop,
    HypervisorEndpoint,
    ImageVersion,
    PersistentDisk,
    Pool,
    Replica,
)

ENDPOINT = "vcsim-demo"
PASSWORD_ENV = "VCSIM_DEMO_PASSWORD"
USER = "svc-vdi@vsphere.local"
PARENT_VM = "DC0_C0_RP0_VM0"
GIB = 1024


class VcsimUnavailable(Exception):
    pass


def start(port: int) -> subprocess.Popen:
    """Build (once) and start the simulator on 127.0.0.1:`port`, with a fresh password in
    the environment for this process and the workers it starts."""
    build = settings.BASE_DIR / "tests" / "vsphere" / "build_vcsim.sh"
    done = subprocess.run([str(build)], capture_output=True, text=True)
    if done.returncode != 0:
        raise VcsimUnavailable((done.stderr or done.stdout).strip())
    os.environ[PASSWORD_ENV] = secrets.token_urlsafe(12)
    log_path = Path(settings.DATA_DIR) / "vcsim.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            str(settings.BASE_DIR / "data" / "vcsim"),
            *("-listen", f"127.0.0.1:{port}", "-ds", "3", "-hosts", "2"),
            *("-username", USER, "-password", os.environ[PASSWORD_ENV]),
        ],
        stdin=subprocess.PIPE,  # it stops when this closes, so it never outlives us
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if re.search(r"VCSIM_URL=", log_path.read_text()):
            return process
        time.sleep(0.1)
    process.kill()
    raise VcsimUnavailable("vcsim did not start: " + log_path.read_text()[-2000:])


def load(port: int, admin) -> None:
    """The endpoint, its datastores, a golden image with two versions and a pool of 4."""

    with transaction.atomic():
        old = HypervisorEndpoint.objects.filter(name=ENDPOINT).first()
        if old is not None:
            # What was on the last simulated vCenter went with it.
            DesktopTask.objects.filter(target_datastore__endpoint=old).update(target_datastore=None)
            Desktop.objects.filter(pool__endpoint=old).delete()
            PersistentDisk.objects.filter(datastore__endpoint=old).delete()
            Replica.objects.filter(datastore__endpoint=old).delete()
            Pool.objects.filter(endpoint=old).delete()
            ImageVersion.objects.filter(image__endpoint=old).delete()
            BaseImage.objects.filter(endpoint=old).delete()
            Datastore.objects.filter(endpoint=old).delete()
            old.delete()
        endpoint = HypervisorEndpoint.objects.create(
            name=ENDPOINT,
            driver="vsphere",
            settings={
                "address": "127.0.0.1",
                "port": port,
                "protocol": "http",
                "username": USER,
                "password_env": PASSWORD_ENV,
                "task_timeout_seconds": 60,
            },
        )
    driver = for_endpoint(endpoint)
    parent = driver.lookup.vm(driver._datacenter(), PARENT_VM)
    for snapshot in ("2026-10-patch", "2026-11-patch"):
        driver.tasks.run(
            f"snapshot {PARENT_VM}",
            lambda name=snapshot: parent.CreateSnapshot_Task(
                name=name, description="", memory=False, quiesce=False
            ),
            key="",
        )
    datastores = sync_datastores(endpoint)
    refs = {s: driver.describe_image(PARENT_VM, s) for s in ("2026-10-patch", "2026-11-patch")}
    image = BaseImage.objects.create(
        endpoint=endpoint,
        name="Windows 11 (vcsim)",
        parent_vm=PARENT_VM,
        parent_ref=refs["2026-10-patch"].parent_ref,
    )
    # The simulator's golden image has a tiny disk: sizes as a real one's, for the pages.
    v1, _ = (
        ImageVersion.objects.create(
            image=image,
            snapshot=snapshot,
            snapshot_ref=ref.snapshot_ref,
            disk_mb=40 * GIB,
            used_mb=2 * GIB,
        )
        for snapshot, ref in refs.items()
    )
    create_pool(
        admin,
        PoolSpec(
            name="vSphere demo",
            naming_pattern="VC-{n:fixed=3}",
            size=4,
            datastores=datastores[:2],
            image_version=v1,
            overcommit=4,
            persistent_disk_mb=GIB,
        ),
    )
