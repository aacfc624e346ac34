"""Round trips to vCenter per desktop, and for an inventory sync, against govmomi's simulator
with a fixed latency on every API call (as a vCenter across a network has).

    .venv/bin/python bench/vsphere_round_trips.py            # make vcsim first

Per desktop: the driver calls of a provision (linked clone, customize, persistent disk,
checkpoint, power on) and of a recompose (power off, relink, customize, checkpoint, attach,
power on) on 50 desktops, with 5 and with 50 datastores in the datacenter. Each desktop is
done by a new driver, as each desktop's job runs in a new work horse: it resumes the worker's
vCenter session and starts from the places the first job stored (as in production). Sync: one
`inventory()` over 100, 1,000 and 2,000 VMs. Round trips are counted by the driver's session
(every API call and every page of a property retrieval); wall time includes the latency.
The ratios compare each figure with the smallest estate of the same run: 1.0 means the cost
does not grow with the estate.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from composer.drivers.base import CustomizationSpec  # noqa: E402
from composer.drivers.vsphere import VSphereConfig, VSphereDriver  # noqa: E402
from composer.drivers.vsphere.places import MemoryPlaces  # noqa: E402
from tests.vsphere import vcsim  # noqa: E402

DESKTOPS = 50
DELAY_MS = 2


class Jar:
    """The worker's session cookie, kept between its jobs (in Redis in the portal)."""

    kept = None

    def get(self):
        return self.kept

    def put(self, cookie, version):
        self.kept = {"cookie": cookie, "version": version}

    def touch(self):
        pass

    def drop(self):
        self.kept = None


def driver_for(sim, jar=None, places=None, **config) -> VSphereDriver:
    return VSphereDriver(
        VSphereConfig(
            host=sim.host,
            port=sim.port,
            protocol="http",
            user=vcsim.USER,
            password=vcsim.PASSWORD,
            timeout=120,
            **config,
        ),
        jar=jar,
        places=places,
    )


def desktops(datastores: int, store: bool = True) -> dict:
    sim = vcsim.start(datastores=datastores, delay_ms=DELAY_MS)
    try:
        reader = vcsim.Reader(sim)
        reader.snapshot_parent(vcsim.PARENT_VM, "v1")
        reader.snapshot_parent(vcsim.PARENT_VM, "v2")
        reader.close()
        jar, places = Jar(), MemoryPlaces()
        driver = driver_for(sim, jar, places)
        target = f"LocalDS_{datastores - 1}"  # the last one: no early exit in a search
        image1 = driver.describe_image(vcsim.PARENT_VM, "v1")
        image2 = driver.describe_image(vcsim.PARENT_VM, "v2")
        replica1 = driver.clone_replica(image1, target, "replica-1")
        replica2 = driver.clone_replica(image2, target, "replica-2")
        driver.close()
        names = [f"VDI-{n:03}" for n in range(1, DESKTOPS + 1)]
        refs = {}

        def job(name, work):
            """One desktop's job: a new driver (a new work horse), the desktop's VM bound."""
            job_driver = driver_for(sim, jar, places if store else None)
            job_driver.bind_vm(name, refs.get(name, ""))
            work(job_driver)
            job_driver.close()
            return job_driver.round_trips

        def provision(d, name):
            refs[name] = d.create_linked_clone(name, replica1, target).ref
            d.customize(name, CustomizationSpec(name))
            d.create_disk(f"{name}-pd", target, 1024)
            d.attach_disk(name, f"{name}-pd", target)
            d.checkpoint(name)
            d.power_on(name)
            d.datastore(target)  # the job ends by taking the datastore's new free space

        def recompose(d, name):
            d.power_off(name)
            d.relink(name, replica2)
            d.customize(name, CustomizationSpec(name))
            d.checkpoint(name)
            d.attach_disk(name, f"{name}-pd", target)
            d.power_on(name)
            d.datastore(target)

        started = time.perf_counter()
        trips = sum(job(name, lambda d, n=name: provision(d, n)) for name in names)
        provision_cost = (trips, time.perf_counter() - started)
        started = time.perf_counter()
        trips = sum(job(name, lambda d, n=name: recompose(d, n)) for name in names)
        recompose_cost = (trips, time.perf_counter() - started)
        return {"provision": provision_cost, "recompose": recompose_cost}
    finally:
        sim.stop()


def sync(vms: int) -> tuple[int, float]:
    # The portal's folder is the datacenter's whole VM folder here, so every VM is read.
    sim = vcsim.start(datastores=5, delay_ms=DELAY_MS, vms=vms)
    try:
        driver = driver_for(sim, vm_folder="/DC0/vm")
        driver.datastores()  # log in and find the datacenter: not part of a sync's cost
        start_trips, started = driver.round_trips, time.perf_counter()
        driver.inventory()
        took = time.perf_counter() - started
        driver.close()
        return driver.round_trips - start_trips, took
    finally:
        sim.stop()


def main() -> None:
    built, why = vcsim.build()
    if not built:
        sys.exit(f"vcsim not available: {why}")
    print(f"latency {DELAY_MS} ms per API call, {DESKTOPS} desktops\n")
    rows = {n: desktops(n) for n in (5, 50)}
    print("| datastores | operation | round trips per desktop | x 5 datastores | s per desktop |")
    print("|---|---|---|---|---|")
    for n, result in rows.items():
        for op, (trips, seconds) in result.items():
            base = rows[5][op][0]
            print(
                f"| {n} | {op} | {trips / DESKTOPS:.1f} | {trips / base:.2f} | "
                f"{seconds / DESKTOPS:.3f} |"
            )
    # The same jobs when each looks its places up by name again (no stored ids).
    unstored = desktops(50, store=False)
    print()
    print("| 50 datastores, places looked up in every job | round trips per desktop | x stored |")
    print("|---|---|---|")
    for op, (trips, _) in unstored.items():
        print(f"| {op} | {trips / DESKTOPS:.1f} | {trips / rows[50][op][0]:.2f} |")
    print()
    print("| VMs in the folder | round trips of a sync | x 100 VMs | wall time |")
    print("|---|---|---|---|")
    base = None
    for vms in (100, 1000, 2000):
        trips, seconds = sync(vms)
        base = base or trips
        print(f"| {vms} | {trips} | {trips / base:.2f} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
