"""The inventory pages make the same number of queries at 200 and at 2,000 desktops.

Their speed at 50,000 desktops is measured in bench/pages.py (no timing here): what a test
can hold is that nothing is fetched per desktop, so the work stays in the database's indexes.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from composer.models import DesktopTask
from pools.models import Desktop
from pools.states import DesktopState as S
from tests import factories
from tests.factories import GIB


def inventory(admin):
    """Three pools on three datastores, two image versions with replicas, a running and a
    scheduled operation and a failed one: everything the pages show, with no desktops yet."""
    endpoint = factories.endpoint("scale")
    datastores = [
        factories.datastore(endpoint, f"ds-{i}", 8192 * GIB, free_mb=2048 * GIB * i)
        for i in (1, 2, 3)
    ]
    image = factories.image(endpoint)
    versions = [factories.version(image, s) for s in ("v1", "v2")]
    replicas = {
        (v.pk, ds.pk): factories.replica(v, ds, name=f"r-{v.pk}-{ds.pk}")
        for v in versions
        for ds in datastores
    }
    pools = [
        factories.pool(
            name,
            versions[1],
            [(ds, {"selected": ds != datastores[2]}) for ds in datastores],
        )
        for name in ("AAA", "BBB", "CCC")
    ]
    now = timezone.now()
    running = factories.operation(pools[0], admin, started_at=now, prepared_at=now)
    scheduled = factories.operation(
        pools[1], admin, status="scheduled", scheduled_for=now + timedelta(hours=2)
    )
    factories.operation(
        pools[2],
        admin,
        kind="power",
        status="partially_failed",
        finished_at=now - timedelta(hours=1),
    )
    return {
        "pools": pools,
        "datastores": datastores,
        "versions": versions,
        "replicas": replicas,
        "running": running,
        "scheduled": scheduled,
    }


def add_desktops(world, start: int, count: int) -> None:
    """Desktops start..start+count across the pools, with every kind of state and problem,
    and a share of them in the running and scheduled operations."""
    now = timezone.now()
    pools, datastores, versions = world["pools"], world["datastores"], world["versions"]
    made = []
    for i in range(start, start + count):
        ds, version = datastores[i // 3 % 3], versions[i // 9 % 2]
        state, session, changed = S.AVAILABLE, "", now
        if i % 50 == 0:
            state = S.ERROR
        elif i % 50 == 1:
            state, changed = S.MAINTENANCE, now - timedelta(hours=3)  # stuck
        elif i % 3 == 0:
            state, session = S.CONNECTED, f"user{i:05d}"
        made.append(
            Desktop(
                pool=pools[i % 3],
                name=f"D-{i:05d}",
                state=state,
                reason="customize failed" if state == S.ERROR else "",
                missing=i % 97 == 5,
                assigned_user=f"user{i:05d}",
                session_user=session,
                datastore=ds,
                replica=world["replicas"][(version.pk, ds.pk)],
                image_version=version,
                state_changed_at=changed - timedelta(minutes=i % 90),
            )
        )
    made = Desktop.objects.bulk_create(made)
    tasks = []
    for i, desktop in enumerate(made):
        if desktop.pool == pools[0] and i % 4 == 0:
            done = i % 8 == 0
            tasks.append(
                DesktopTask(
                    operation=world["running"],
                    desktop=desktop,
                    desktop_name=desktop.name,
                    status="succeeded" if done else "pending",
                    started_at=now - timedelta(minutes=5) if done else None,
                    finished_at=now - timedelta(minutes=4) if done else None,
                )
            )
        elif desktop.pool == pools[1] and i % 5 == 0:
            tasks.append(
                DesktopTask(
                    operation=world["scheduled"], desktop=desktop, desktop_name=desktop.name
                )
            )
    DesktopTask.objects.bulk_create(tasks)


def pages(world):
    pool = world["pools"][0]
    some = Desktop.objects.filter(pool=pool).order_by("name")[3]
    ds, version = world["datastores"][1], world["versions"][1]
    return [
        ("admin", reverse("dashboard"), {}),
        ("admin", reverse("dashboard"), {"HX-Request": "true"}),
        ("admin", reverse("pools:detail", args=[pool.pk]), {}),
        ("admin", reverse("pools:detail", args=[pool.pk]), {"HX-Request": "true"}),
        (
            "admin",
            reverse("pools:detail", args=[pool.pk])
            + f"?state=available&datastore={ds.pk}&version={version.pk}&sort=-changed&page=2",
            {},
        ),
        ("admin", reverse("pools:detail", args=[pool.pk]) + "?sort=datastore&page=3", {}),
        ("admin", reverse("pools:detail", args=[pool.pk]) + "?sort=-user&q=user0", {}),
        ("admin", reverse("pools:detail", args=[pool.pk]) + "?flag=stuck", {}),
        ("admin", reverse("pools:detail", args=[pool.pk]) + "?user=user00003", {}),
        ("admin", reverse("pools:datastores"), {}),
        ("admin", reverse("pools:images"), {}),
        ("admin", reverse("pools:desktop", args=[some.pk]), {}),
        ("admin", reverse("composer:operations"), {}),
        ("helpdesk", reverse("helpdesk") + "?q=USER0001", {}),
    ]


def count_queries(clients, world) -> dict:
    counts = {}
    for who, url, headers in pages(world):
        client = clients[who]
        assert client.get(url, headers=headers).status_code == 200, url  # warm caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        counts[(url, bool(headers))] = len(queries)
    return counts


@pytest.mark.django_db
def test_pages_make_the_same_number_of_queries_at_200_and_2000_desktops(
    users, redis_conn, client, django_user_model
):
    from django.test import Client

    clients = {"admin": client, "helpdesk": Client()}
    clients["admin"].force_login(users["admin"])
    clients["helpdesk"].force_login(users["helpdesk"])
    world = inventory(users["admin"])

    add_desktops(world, 0, 200)
    small = count_queries(clients, world)
    add_desktops(world, 200, 1800)
    assert Desktop.objects.count() == 2000
    large = count_queries(clients, world)

    assert large == small
    # And the counts are small: a handful of queries per page, never one per row.
    assert max(small.values()) <= 30, small
