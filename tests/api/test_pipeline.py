"""The README's image pipeline (docs/api/pipeline.py) run as a subprocess against a live server
and a real worker process: register the new snapshot, dry run, plan, approve, poll."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer import services
from composer.models import Operation
from pools.models import Pool
from portal.models import ApiToken
from tests.worker_processes import start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "api" / "pipeline.py"
GIB = 1024


@pytest.fixture
def pool(users, lab, run_jobs):
    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Pipe",
            naming_pattern="PIP-{n:fixed=2}",
            size=3,
            datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
            image_version=lab.v1,
            overcommit=4,
            persistent_disk_mb=GIB,
        ),
    )
    run_jobs()  # provisioned in-process
    # The golden image's new snapshot, as a Packer build would leave it.
    lab.sim.add_parent_vm("gold", ["v1", "v2", "v3"], disk_mb=40 * GIB, used_mb=20 * GIB)
    return Pool.objects.get(name="Pipe")


@pytest.fixture
def worker():
    process = start_worker(scheduler=True)
    yield process
    stop(process)


def pipeline(live_server, users, pool, *extra) -> subprocess.CompletedProcess:
    _, secret = ApiToken.issue(users["admin"], "image pipeline")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORTAL_URL": live_server.url,
        "PORTAL_TOKEN": secret,
        "PIPELINE_RUN": "build-1",
    }
    args = [sys.executable, str(SCRIPT), "--image", str(pool.image_version.image_id)]
    args += ["--snapshot", "v3", "--pool", str(pool.pk), "--poll", "0.2", *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_the_pipeline_recomposes_the_pool_onto_the_new_snapshot(
    live_server, users, lab, pool, worker
):
    done = pipeline(live_server, users, pool, "--set-default", "--logoff", "force")

    assert done.returncode == 0, done.stdout + done.stderr
    operation = Operation.objects.get(kind="recompose")
    assert operation.status == Operation.Status.SUCCEEDED
    assert {d.image_version.snapshot for d in pool.desktops.select_related("image_version")} == {
        "v3"
    }
    pool.refresh_from_db()
    assert pool.image_version.snapshot == "v3"
    assert f"operation #{operation.pk} succeeded" in done.stdout


def test_the_pipeline_exits_non_zero_naming_the_failed_desktop(
    live_server, users, lab, pool, worker
):
    lab.sim.fail_desktop("PIP-02")

    done = pipeline(live_server, users, pool)

    assert done.returncode == 1, done.stdout + done.stderr
    operation = Operation.objects.get(kind="recompose")
    assert operation.status == Operation.Status.PARTIALLY_FAILED
    assert "PIP-02: failed" in done.stderr
    versions = dict(pool.desktops.values_list("name", "image_version__snapshot"))
    assert versions["PIP-01"] == versions["PIP-03"] == "v3"
