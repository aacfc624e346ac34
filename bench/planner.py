"""Time the rebalance planner on a large pool: 20,000 desktops over 64 datastores.

Run: .venv/bin/python bench/planner.py

Eight datastores are deselected (to be vacated), sizes and over-commit factors vary, the pool
starts unevenly spread, three image versions are in use, and about 5% of the desktops cannot
move. Prints the median of several runs of plan(), the median of a baseline run in the same
process (sorting the 20,000 desktops by name), and their ratio, which is the figure to compare
across machines.
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
import time
from collections import Counter
from operator import attrgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer.rebalance_planner import PlanDatastore, PlanDesktop, plan  # noqa: E402

GIB = 1024
DATASTORES = 64
DESKTOPS = 20_000
RUNS = 9


def build(seed: int = 1) -> tuple[list[PlanDatastore], list[PlanDesktop], dict[str, int]]:
    rnd = random.Random(seed)
    versions = {"v1": 30 * GIB, "v2": 32 * GIB, "v3": 35 * GIB}
    names = [f"ds-{i:02}" for i in range(DATASTORES)]
    # Uneven start: the first datastores hold most of the pool.
    weights = [1 / (1 + i) for i in range(DATASTORES)]
    desktops = [
        PlanDesktop(
            name=f"VDI-{i:05}",
            datastore=rnd.choices(names, weights)[0],
            image_version=rnd.choice(list(versions)),
            disk_mb=rnd.choice([40, 60, 80]) * GIB,
            real_mb=rnd.randint(512, 4 * GIB) + rnd.choice([0, 0, 10 * GIB]),  # some persistent
            movable=rnd.random() > 0.05,
        )
        for i in range(DESKTOPS)
    ]
    rnd.shuffle(desktops)
    own_disk = Counter()
    own_real = Counter()
    for d in desktops:
        own_disk[d.datastore] += d.disk_mb
        own_real[d.datastore] += d.real_mb
    datastores = []
    for i, name in enumerate(names):
        capacity = rnd.choice([8, 16, 32, 64]) * 1024 * GIB
        datastores.append(
            PlanDatastore(
                name=name,
                capacity_mb=capacity,
                free_mb=max(0, capacity - own_real[name] - rnd.randint(0, capacity // 4)),
                overcommit=rnd.choice([1, 4, 4, 7, 15, 0]),
                committed_mb=own_disk[name] + rnd.randint(0, 20) * 40 * GIB,
                selected=i % 8 != 3,  # 8 deselected
                replicas=frozenset(v for v in versions if rnd.random() < 0.5),
            )
        )
    return datastores, desktops, versions


def median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    datastores, desktops, replica_mb = build()
    result = plan(datastores, desktops, replica_mb)  # warm-up, and the figures below
    planned = median_seconds(lambda: plan(datastores, desktops, replica_mb), RUNS)
    baseline = median_seconds(lambda: sorted(desktops, key=attrgetter("name")), RUNS * 5)
    print(f"Python {platform.python_version()} on {platform.machine()}")
    print(
        f"{len(desktops)} desktops, {len(datastores)} datastores "
        f"({sum(not d.selected for d in datastores)} deselected), "
        f"{sum(not d.movable for d in desktops)} unmovable"
    )
    print(
        f"plan: {len(result.moves)} moves, {len(result.unplaced)} unplaced, "
        f"{len(result.replicas_needed)} replicas needed"
    )
    print(f"plan() median of {RUNS}: {planned * 1000:.1f} ms")
    print(f"baseline (sort desktops by name) median of {RUNS * 5}: {baseline * 1000:.2f} ms")
    print(f"ratio plan/baseline: {planned / baseline:.1f}")


if __name__ == "__main__":
    main()
