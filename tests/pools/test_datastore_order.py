"""Sorting the pool page by datastore a datastore at a time (pools/datastore_order.py) gives
exactly the order and pages of ORDER BY datastore name, datastore id, desktop name: checked
page by page against that query, in both directions, with filters, on several layouts
(datastores of the same name on two hypervisors, empty ones, one holding everything)."""

import random

import pytest
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pools.datastore_order import DatastoreOrderedIds
from pools.models import Desktop
from pools.states import DesktopState as S
from tests import factories

pytestmark = pytest.mark.django_db

LAYOUTS = {
    "even": [40, 40, 40],
    "one holds all": [250, 0, 0, 0],
    "ragged": [1, 99, 100, 101, 3],
    "many small": [7] * 20,
}


def build(sizes: list[int], seed: int):
    rng = random.Random(seed)
    endpoints = [factories.endpoint(f"vc-{i}") for i in (1, 2)]
    version = factories.version(factories.image(endpoints[0], "img"), disk_mb=1, used_mb=1)
    pool = factories.pool("P", version, naming_pattern="P-{n}")
    # Names chosen so that id order and name order differ, and two share a name.
    names = [f"ds-{rng.choice('zyxabc')}{rng.randrange(100):02d}-{i}" for i in range(len(sizes))]
    names[-1] = names[0]  # on the other hypervisor
    datastores = [
        factories.datastore(endpoints[1 if i == len(sizes) - 1 else 0], n, capacity_mb=1)
        for i, n in enumerate(names)
    ]
    desktops = []
    for ds, size in zip(datastores, sizes, strict=True):
        for _ in range(size):
            desktops.append(
                Desktop(
                    pool=pool,
                    name=f"D{rng.randrange(10**6):06d}{len(desktops):04d}",
                    datastore=ds,
                    image_version=version,
                    state=rng.choice([S.AVAILABLE, S.CONNECTED, S.ERROR]),
                )
            )
    rng.shuffle(desktops)  # ids in no particular order
    Desktop.objects.bulk_create(desktops)
    return pool


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("descending", [False, True])
def test_pages_match_order_by_datastore_name(layout, descending):
    pool = build(LAYOUTS[layout], seed=len(layout))
    for state in ("", S.AVAILABLE):
        desktops = Desktop.objects.filter(pool=pool)
        if state:
            desktops = desktops.filter(state=state)
        columns = ("datastore__name", "datastore_id", "name")
        if descending:
            columns = tuple(f"-{c}" for c in columns)
        expected = list(desktops.order_by(*columns).values_list("pk", flat=True))
        ordered = DatastoreOrderedIds(desktops, descending)
        assert ordered.count() == len(expected)
        for per_page in (100, 17):
            paginator = Paginator(ordered, per_page)
            got = []
            for number in paginator.page_range:
                with CaptureQueriesContext(connection) as queries:
                    page = list(paginator.page(number).object_list)
                assert len(queries) == 1  # one query, however many datastores it spans
                got += page
            assert got == expected, (layout, state, per_page)


def test_known_counts_save_the_count_query():
    pool = build(LAYOUTS["ragged"], seed=3)
    desktops = Desktop.objects.filter(pool=pool)
    counts = {}
    for ds in desktops.values_list("datastore_id", flat=True):
        counts[ds] = counts.get(ds, 0) + 1
    with CaptureQueriesContext(connection) as queries:
        ordered = DatastoreOrderedIds(desktops, False, counts=counts)
    assert len(queries) == 1  # the datastores' names only
    assert ordered[0:5] == list(
        desktops.order_by("datastore__name", "datastore_id", "name").values_list("pk", flat=True)[
            :5
        ]
    )
