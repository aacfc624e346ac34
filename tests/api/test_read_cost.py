"""Every read list costs the same number of queries per page: on the first page and on a deep
one (cursor pages, no OFFSET), and whether the page holds 10 rows or 100 (no query per row:
select_related, prefetch, and one GROUP BY per page for counts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.log import record
from composer.models import DesktopTask, Operation
from pools.models import Desktop, HypervisorEndpoint, PersistentDisk
from pools.states import DesktopState
from tests import factories as f

pytestmark = pytest.mark.django_db

STATES = [
    DesktopState.AVAILABLE,
    DesktopState.CONNECTED,
    DesktopState.ERROR,
    DesktopState.MAINTENANCE,
    DesktopState.PROVISIONED,
]
TASK_STATUSES = ["succeeded", "failed", "running", "pending", "halted", "waiting"]


@pytest.fixture
def world(users):
    """12 datastores, 12 versions of 4 images, 24 replicas, 12 pools of 10 desktops spread
    over states and datastores, 110 operations (one of every desktop), and a desktop in all of
    them; 110 audit events."""
    endpoint = f.endpoint()
    for i in range(11):
        HypervisorEndpoint.objects.create(name=f"extra-{i}", sync_error="x" * (i % 2))
    datastores = [f.datastore(endpoint, f"ds-{i:02d}") for i in range(12)]
    versions = []
    for i in range(4):
        image = f.image(endpoint, f"img-{i}", parent_vm=f"gold-{i}")
        versions += [f.version(image, f"v{j}") for j in range(3)]
    replicas = {}
    for i, version in enumerate(versions):
        for ds in (datastores[i], datastores[(i + 1) % 12]):
            replicas[(version.pk, ds.pk)] = f.replica(version, ds)
    pools, desktops = [], []
    for i, version in enumerate(versions):
        pool = f.pool(
            f"pool-{i:02d}",
            version,
            [datastores[i], (datastores[(i + 1) % 12], {"selected": False})],
        )
        pools.append(pool)
        for j in range(10):
            ds = datastores[(i + j % 2) % 12]
            desktops.append(
                Desktop(
                    pool=pool,
                    name=f"P{i:02d}-{j:02d}",
                    datastore=ds,
                    image_version=version,
                    replica=replicas[(version.pk, ds.pk)] if j % 3 else None,
                    state=STATES[j % len(STATES)],
                    assigned_user=f"user{j}",
                )
            )
    desktops = Desktop.objects.bulk_create(desktops)
    PersistentDisk.objects.bulk_create(
        PersistentDisk(name=f"disk-{d.name}", desktop=d, datastore=d.datastore, size_mb=1024)
        for d in desktops[::3]
    )
    admins = [users["admin"], users["helpdesk"]]
    now = timezone.now()
    operations = Operation.objects.bulk_create(
        Operation(
            kind=["refresh", "power", "recompose"][i % 3],
            pool=pools[i % 12],
            pool_name=pools[i % 12].name,
            status=["running", "succeeded", "partially_failed", "paused"][i % 4],
            requested_by=admins[i % 2],
            started_at=now - timedelta(minutes=10),
        )
        for i in range(110)
    )
    first = desktops[0]
    DesktopTask.objects.bulk_create(
        DesktopTask(
            operation=op,
            desktop=d,
            desktop_name=d.name,
            status=TASK_STATUSES[(i + k) % len(TASK_STATUSES)],
        )
        for i, op in enumerate(operations)
        for k, d in enumerate({first, desktops[i % len(desktops)]})
    )
    big = operations[0]
    DesktopTask.objects.bulk_create(
        DesktopTask(operation=big, desktop=d, desktop_name=d.name, status=TASK_STATUSES[k % 6])
        for k, d in enumerate(desktops)
        if d != first and d != desktops[0]
    )
    for i in range(110):
        record(
            actor=admins[i % 2],
            action=["refresh", "power"][i % 2],
            outcome="requested",
            target=pools[i % 12],
            operation=operations[i],
        )
    return {"desktop": first, "operation": big}


def _walk(client, url: str, size: int) -> list[tuple[int, int]]:
    """(queries, rows) of each page of `url`, following the next links to the end."""
    pages = []
    link = f"{url}{'&' if '?' in url else '?'}page_size={size}"
    while link:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(link)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append((len(queries), len(body["results"])))
        link = body["next"]
    return pages


def _routes(world) -> list[tuple[str, int, int]]:
    """(list route, a small page size, a large one): pages full of rows either way."""
    desktop, operation = world["desktop"], world["operation"]
    return [
        ("/api/v1/hypervisors/", 1, 10),
        ("/api/v1/datastores/", 1, 10),
        ("/api/v1/images/", 1, 4),
        ("/api/v1/image-versions/", 1, 10),
        ("/api/v1/replicas/", 2, 20),
        ("/api/v1/pools/", 1, 10),
        ("/api/v1/desktops/", 10, 100),
        ("/api/v1/desktops/?q=P0", 1, 10),
        (f"/api/v1/desktops/{desktop.pk}/history/", 10, 100),
        ("/api/v1/operations/", 10, 100),
        ("/api/v1/operations/?kind=refresh", 3, 30),
        (f"/api/v1/operations/{operation.pk}/desktops/", 10, 100),
        ("/api/v1/audit/", 10, 100),
    ]


def test_every_list_costs_the_same_queries_on_every_page_and_for_any_page_size(
    client, users, world
):
    client.force_login(users["admin"])
    client.get("/api/v1/pools/")  # the session's first use writes it: not a page's cost
    for url, small, large in _routes(world):
        deep = _walk(client, url, small)
        assert len(deep) >= 4, url  # a first page, deep ones and a last one
        assert len({queries for queries, _ in deep}) == 1, (url, deep)
        assert all(rows == small for _, rows in deep[:-1]), (url, deep)
        (few_queries, few), (many_queries, many) = deep[0], _walk(client, url, large)[0]
        assert (few, many) == (small, large), url
        assert few_queries == many_queries, (url, few_queries, many_queries)


def test_a_detail_costs_the_same_whatever_it_holds(client, users, world):
    """A pool with more desktops, a datastore with more pools, an operation with more
    desktops: the same queries."""
    client.force_login(users["admin"])
    client.get("/api/v1/pools/")
    for route, model_ids in (
        ("pools", list(_ids("pools.Pool"))[:3]),
        ("datastores", list(_ids("pools.Datastore"))[:3]),
        ("operations", list(_ids("composer.Operation"))[:3]),
        ("desktops", list(_ids("pools.Desktop"))[:3]),
        ("image-versions", list(_ids("pools.ImageVersion"))[:3]),
        ("replicas", list(_ids("pools.Replica"))[:3]),
    ):
        counts = set()
        for pk in model_ids:
            with CaptureQueriesContext(connection) as queries:
                assert client.get(f"/api/v1/{route}/{pk}/").status_code == 200
            counts.add(len(queries))
        assert len(counts) == 1, (route, counts)


def _ids(label: str):
    return apps.get_model(label).objects.order_by("-pk").values_list("pk", flat=True)
