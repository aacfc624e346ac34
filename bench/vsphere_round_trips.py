"""Round trips to vCenter per desktop, and for an inventory sync, against govmomi's simulator
with a fixed latency on every API call (as a vCenter across a network has).

    .venv/bin/python bench/vsphere_round_trips.py            # make vcsim first

Per desktop: the driver calls of a provision (linked clone, customize, persistent disk,
checkpoint, power on) and of a recompose (power off, relink, customize, checkpoint, attach,
power on) on 50 desktops, with 5 and with 50 datastores in the datacenter. Sync: one
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

from composer.drivers.base import CustomizationSpec, ImageRef  # noqa: E402
from composer.drivers.vsphere import VSphereConfig, VSphereDriver  # noqa: E402
from tests.vsphere import vcsim  # noqa: E402

DESKTOPS = 50
DELAY_MS = 2


def driver_for(sim, **config) -> VSphereDriver:
    return VSphereDriver(
        VSphereConfig(
            host=sim.host,
            port=sim.port,
            protocol="http",
            user=vcsim.USER,
            password=vcsim.PASSWORD,
            timeout=120,
            **config,
        )
    )


def desktops(datastores: int) -> dict:
    sim = vcsim.start(datastores=datastores, delay_ms=DELAY_MS)
    try:
        reader = vcsim.Reader(sim)
        reader.snapshot_parent(vcsim.PARENT_VM, "v1")
        reader.snapshot_parent(vcsim.PARENT_VM, "v2")
        reader.close()
        driver = driver_for(sim)
        target = f"LocalDS_{datastores - 1}"  # the last one: no early exit in a search
        image1 = ImageRef(vcsim.PARENT_VM, "v1", 1, 1)
        image2 = ImageRef(vcsim.PARENT_VM, "v2", 1, 1)
        replica1 = driver.clone_replica(image1, target, "replica-1")
        replica2 = driver.clone_replica(image2, target, "replica-2")
        names = [f"VDI-{n:03}" for n in range(1, DESKTOPS + 1)]

        start_trips, started = driver.round_trips, time.perf_counter()
        for name in names:
            driver.create_linked_clone(name, replica1, target)
            driver.customize(name, CustomizationSpec(name))
            driver.create_disk(f"{name}-pd", target, 1024)
            driver.attach_disk(name, f"{name}-pd", target)
            driver.checkpoint(name)
            driver.power_on(name)
        provision = (driver.round_trips - start_trips, time.perf_counter() - started)

        start_trips, started = driver.round_trips, time.perf_counter()
        for name in names:
            driver.power_off(name)
            driver.relink(name, replica2)
            driver.customize(name, CustomizationSpec(name))
            driver.checkpoint(name)
            driver.attach_disk(name, f"{name}-pd", target)
            driver.power_on(name)
        recompose = (driver.round_trips - start_trips, time.perf_counter() - started)
        driver.close()
        return {"provision": provision, "recompose": recompose}
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
