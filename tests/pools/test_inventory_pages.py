"""The images page (lineage image -> version -> replica -> desktops, unused replicas) and the
datastores page (use, over-commit, pools)."""

import pytest
from django.urls import reverse

from pools.models import PoolDatastore, Replica
from tests import factories
from tests.factories import GIB

pytestmark = pytest.mark.django_db


@pytest.fixture
def inventory(users):
    endpoint = factories.endpoint("inv")
    ds = {
        name: factories.datastore(endpoint, name, 100 * GIB, free_mb=free * GIB)
        for name, free in (("ds-a", 60), ("ds-b", 4), ("ds-c", 90))
    }
    win11 = factories.image(endpoint, "Win11", "gold11")
    win10 = factories.image(endpoint, "Win10", "gold10")
    v1 = factories.version(win11, "v1", disk_mb=20 * GIB, used_mb=GIB)
    v2 = factories.version(win11, "v2", disk_mb=20 * GIB, used_mb=GIB)
    old = factories.version(win10, "22H2", disk_mb=30 * GIB, used_mb=GIB)

    def replica(version, datastore, status="ready"):
        return factories.replica(version, ds[datastore], status, size_mb=GIB)

    r = {
        "v1-a": replica(v1, "ds-a"),
        "v1-b": replica(v1, "ds-b"),
        "v2-a": replica(v2, "ds-a"),  # no desktop reads it, but a v2 desktop sits on ds-a
        "v2-c": replica(v2, "ds-c"),  # unused: safe to delete
        "old-c": replica(old, "ds-c"),  # unused: safe to delete
        "v2-b": replica(v2, "ds-b", status="creating"),  # unused, but being cloned
    }
    sales = factories.pool(
        "Sales", v1, [ds["ds-a"], (ds["ds-b"], {"overcommit": 7, "selected": False})], size=5
    )
    eng = factories.pool("Eng", v2, [ds["ds-a"]], overcommit=1, size=2)

    def desktops(pool, prefix, datastore, version, replica_row, n):
        names = [f"{prefix}{i}" for i in range(n)]
        factories.desktops(pool, names, ds[datastore], image_version=version, replica=replica_row)

    desktops(sales, "SA", "ds-a", v1, r["v1-a"], 3)
    desktops(sales, "SB", "ds-b", v1, r["v1-b"], 2)
    desktops(eng, "EA", "ds-a", v2, None, 1)  # being provisioned: no replica link yet
    desktops(eng, "EB", "ds-a", v1, r["v1-a"], 1)  # not recomposed to v2 yet
    return {"ds": ds, "replicas": r, "v1": v1, "v2": v2, "old": old, "sales": sales, "eng": eng}


def test_images_page_shows_the_lineage_with_desktops_per_replica(client, users, inventory):
    client.force_login(users["auditor"])
    response = client.get(reverse("pools:images"))
    assert response.status_code == 200
    images = {image.name: versions for image, versions in response.context["images"]}
    assert list(images) == ["Win10", "Win11"]
    v1, v2 = images["Win11"]
    assert (v1.version, v2.version) == (inventory["v1"], inventory["v2"])
    assert {r.replica.name: r.desktops for r in v1.replicas} == {
        "replica-v1-ds-a": 4,
        "replica-v1-ds-b": 2,
    }
    assert v1.desktops == 6 and v2.desktops == 1
    assert [(pool.name, n) for pool, n in v1.used_by] == [("Eng", 1), ("Sales", 5)]
    assert [pool.name for pool in v1.default_of] == ["Sales"]
    assert [pool.name for pool in v2.default_of] == ["Eng"]
    # EA0 reads no replica yet, but v2 has one on its datastore: nothing is missing.
    assert v2.without_replica == []
    html = response.content.decode()
    assert "replica-v1-ds-a" in html and 'id="version-' in html


def test_unused_replicas_follow_the_remove_unused_rule(client, users, inventory):
    client.force_login(users["admin"])
    response = client.get(reverse("pools:images"))
    unused = {row.replica.name for row in response.context["unused"]}
    # v2 on ds-a: no desktop reads it, but a v2 desktop sits on ds-a and needs it next.
    # v2 on ds-b: no desktop at all, but it is still being cloned by an operation.
    assert unused == {"replica-v2-ds-c", "replica-22H2-ds-c"}
    rows = {
        r.replica.name: r
        for _, versions in response.context["images"]
        for v in versions
        for r in v.replicas
    }
    assert rows["replica-v2-ds-a"].desktops == 0 and not rows["replica-v2-ds-a"].unused
    assert rows["replica-v2-ds-b"].unused and not rows["replica-v2-ds-b"].safe_to_delete
    assert b"yes, unused" in response.content and b"no: being created" in response.content
    assert Replica.objects.count() == 6  # shown, never deleted


def test_images_page_is_for_roles_that_read_images(client, users, inventory):
    client.force_login(users["helpdesk"])
    assert client.get(reverse("pools:images")).status_code == 403


def test_datastores_page_shows_use_overcommit_and_pools(client, users, inventory):
    client.force_login(users["auditor"])
    response = client.get(reverse("pools:datastores"))
    rows = {u.datastore.name: u for u in response.context["rows"]}
    a, b, c = rows["ds-a"], rows["ds-b"], rows["ds-c"]
    assert (a.desktops, b.desktops, c.desktops) == (5, 2, 0)
    # ds-a: 4 v1 clones + 1 v2 clone, 20 GiB parents; the strictest pool level on it is 1x.
    assert (a.committed_mb, a.factor, a.limit_mb) == (100 * GIB, 1, 100 * GIB)
    assert a.committed_percent == 100 and a.committed_warn
    # ds-b: Sales deselected it (to be vacated): no selecting pool, so its own default level.
    assert (b.factor, b.factor_source) == (4, "the datastore's default level")
    assert b.warn and round(b.used_percent) == 96
    assert {(p.link.pool.name, p.desktops, p.link.selected) for p in a.pools} == {
        ("Eng", 2, True),
        ("Sales", 3, True),
    }
    html = response.content.decode()
    assert "deselected, to be vacated" in html
    assert "No pool uses it." in html
    assert "style=" not in html


def test_datastores_page_lists_desktops_left_on_a_datastore_the_pool_does_not_use(
    client, users, inventory
):
    PoolDatastore.objects.filter(
        pool=inventory["sales"], datastore=inventory["ds"]["ds-b"]
    ).delete()
    client.force_login(users["admin"])
    rows = {u.datastore.name: u for u in client.get(reverse("pools:datastores")).context["rows"]}
    assert [(pool.name, n) for pool, n in rows["ds-b"].other_pools] == [("Sales", 2)]
