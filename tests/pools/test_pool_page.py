"""The pool page's desktop table: filters, search, whitelisted sorts, pagination, selection;
and the operations list's filters."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from composer.models import Operation
from pools.models import Desktop, PoolDatastore
from pools.states import DesktopState as S
from tests import factories
from tests.factories import GIB

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool(users):
    """150 desktops over two datastores (named against their ids' order) and two versions."""
    endpoint = factories.endpoint("page")
    zulu = factories.datastore(endpoint, "zulu", GIB)
    alpha = factories.datastore(endpoint, "alpha", GIB)
    image = factories.image(endpoint)
    v1, v2 = (factories.version(image, s, disk_mb=GIB, used_mb=GIB) for s in ("v1", "v2"))
    pool = factories.pool("Big", v2, [zulu, alpha], size=150, naming_pattern="B-{n:fixed=3}")
    other = factories.pool("Other", v2, naming_pattern="O-{n}")
    now = timezone.now()
    Desktop.objects.bulk_create(
        Desktop(
            pool=pool,
            name=f"B-{i:03d}",
            datastore=zulu if i % 2 else alpha,
            image_version=v1 if i % 3 == 0 else v2,
            state=S.ERROR if i % 10 == 0 else S.CONNECTED if i % 10 == 1 else S.AVAILABLE,
            assigned_user=f"user{150 - i:03d}",
            session_user=f"Guest.{i:03d}" if i % 10 == 1 else "",
            missing=i == 42,
            state_changed_at=now - timedelta(minutes=i),
        )
        for i in range(1, 151)
    )
    factories.desktop(other, "O-1", alpha, assigned_user="user001")
    return {"pool": pool, "zulu": zulu, "alpha": alpha, "v1": v1, "v2": v2, "now": now}


def names(client, pool, **params):
    response = client.get(reverse("pools:detail", args=[pool.pk]), params)
    assert response.status_code == 200
    return [d.name for d in response.context["page"]]


@pytest.fixture
def admin(client, users):
    client.force_login(users["admin"])
    return client


def test_first_page_is_100_desktops_by_name_and_the_second_the_rest(admin, pool):
    first = names(admin, pool["pool"])
    assert first == [f"B-{i:03d}" for i in range(1, 101)]
    assert names(admin, pool["pool"], page=2) == [f"B-{i:03d}" for i in range(101, 151)]
    # A page past the end shows the last one; nonsense shows the first.
    assert names(admin, pool["pool"], page=99)[0] == "B-101"
    assert names(admin, pool["pool"], page="x")[0] == "B-001"
    html = admin.get(reverse("pools:detail", args=[pool["pool"].pk])).content.decode()
    assert "Desktops 1&ndash;100 of 150." in html
    assert "page=2" in html and "O-1" not in html


def test_filters_by_state_user_datastore_and_image_version(admin, pool):
    p = pool["pool"]
    errors = names(admin, p, state="error")
    assert errors == [f"B-{i:03d}" for i in range(10, 151, 10)]
    # The user filter is exact and matches the assigned or the logged-on user.
    assert names(admin, p, user="user149") == ["B-001"]
    assert names(admin, p, user="Guest.011") == ["B-011"]
    assert names(admin, p, user="user14") == []
    zulu = names(admin, p, datastore=pool["zulu"].pk, page=1)
    assert len(zulu) == 75 and all(int(n[2:]) % 2 for n in zulu)
    v1 = names(admin, p, version=pool["v1"].pk)
    assert v1 == [f"B-{i:03d}" for i in range(3, 151, 3)]
    both = names(admin, p, state="error", datastore=pool["alpha"].pk, version=pool["v1"].pk)
    assert both == ["B-030", "B-060", "B-090", "B-120", "B-150"]
    assert names(admin, p, flag="missing") == ["B-042"]
    # Unknown values are ignored, not errors.
    assert len(names(admin, p, state="bogus", datastore="x", version="-3", flag="?")) == 100


def test_search_is_partial_and_case_insensitive_over_name_and_users(admin, pool):
    p = pool["pool"]
    assert names(admin, p, q="b-14") == [f"B-{i:03d}" for i in range(140, 150)]
    assert names(admin, p, q="GUEST.02") == ["B-021"]
    assert names(admin, p, q="user00") == [f"B-{i:03d}" for i in range(141, 151)]


def test_sorts_by_each_whitelisted_key_both_ways(admin, pool):
    p = pool["pool"]
    assert names(admin, p, sort="-name")[:2] == ["B-150", "B-149"]
    assert names(admin, p, sort="user")[:2] == ["B-150", "B-149"]  # user000, user001
    assert names(admin, p, sort="-user")[:2] == ["B-001", "B-002"]
    assert names(admin, p, sort="changed")[:2] == ["B-150", "B-149"]  # oldest change first
    assert names(admin, p, sort="-changed")[:2] == ["B-001", "B-002"]
    by_state = names(admin, p, sort="state")
    assert by_state[:3] == ["B-002", "B-003", "B-004"]  # available, then connected, error
    # By datastore *name* (alpha before zulu, whatever their ids), then desktop name.
    by_datastore = names(admin, p, sort="datastore")
    assert by_datastore[:3] == ["B-002", "B-004", "B-006"]
    assert names(admin, p, sort="-datastore")[:2] == ["B-149", "B-147"]
    # Anything else falls back to the name: no ordering by arbitrary fields.
    for bogus in ("reason", "-pool__name", "password", "datastore__capacity_mb"):
        assert names(admin, p, sort=bogus)[:2] == ["B-001", "B-002"], bogus


def test_sort_links_keep_the_filters_and_toggle_the_direction(admin, pool):
    p = pool["pool"]
    response = admin.get(reverse("pools:detail", args=[p.pk]), {"state": "error", "sort": "user"})
    links = response.context["sort_links"]
    assert links["user"]["url"] == "?state=error&sort=-user"
    assert links["user"]["current"] and not links["user"]["descending"]
    assert links["name"]["url"] == "?state=error&sort=name"
    html = response.content.decode()
    assert 'aria-sort="ascending"' in html
    assert '<input type="hidden" name="sort" value="user">' in html  # the filter form keeps it


def test_selection_checkboxes_and_action_bar_still_work_on_a_filtered_page(admin, pool):
    p = pool["pool"]
    html = admin.get(reverse("pools:detail", args=[p.pk]), {"state": "error"}).content.decode()
    assert html.count('type="checkbox" name="desktop"') == 15
    assert 'id="desktop-selection"' in html
    assert reverse("pools:operate", args=[p.pk, "refresh"]) in html
    picked = Desktop.objects.get(name="B-020")
    form = admin.get(
        reverse("pools:operate", args=[p.pk, "refresh"]), {"desktop": picked.pk, "selection": 1}
    )
    assert form.status_code == 200 and b"1 selected desktop" in form.content


def test_auditor_sees_the_table_without_selection(client, users, pool):
    client.force_login(users["auditor"])
    html = client.get(reverse("pools:detail", args=[pool["pool"].pk])).content.decode()
    assert 'type="checkbox"' not in html and "B-001" in html


def test_operations_list_filters_by_status_kind_pool_and_requester(client, users, pool):
    p = pool["pool"]
    rows = [
        ("refresh", "succeeded", "Big", users["admin"]),
        ("refresh", "failed", "Big", users["helpdesk"]),
        ("power", "succeeded", "Big", users["helpdesk"]),
        ("recompose", "running", "Gone", users["admin"]),
    ]
    for kind, status, pool_name, who in rows:
        Operation.objects.create(
            kind=kind,
            pool=p if pool_name == "Big" else None,
            pool_name=pool_name,
            status=status,
            requested_by=who,
        )
    client.force_login(users["auditor"])
    url = reverse("composer:operations")

    def listed(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return sorted((op.kind, op.status, op.pool_name) for op in response.context["page"])

    assert len(listed()) == 4
    assert listed(kind="refresh") == [("refresh", "failed", "Big"), ("refresh", "succeeded", "Big")]
    assert listed(status="failed") == [("refresh", "failed", "Big")]
    assert listed(pool="Gone") == [("recompose", "running", "Gone")]  # a deleted pool too
    assert listed(by="hal", kind="power") == [("power", "succeeded", "Big")]
    assert len(listed(kind="nonsense", status="nonsense")) == 4
    html = client.get(url, {"kind": "refresh"}).content.decode()
    assert '<option value="Gone">Gone</option>' in html
    assert '<option value="hal">hal</option>' in html
    assert 'value="refresh" selected' in html


def test_all_matching_the_filter_reaches_past_the_page_and_the_pager_is_above_too(admin, pool):
    """Issue 10, item 9: 120 desktops match "available", 100 show; "all 120 matching" takes
    all of them to the operation form, and the pager is above the table as well as below."""
    p = pool["pool"]
    html = admin.get(reverse("pools:detail", args=[p.pk]), {"state": "available"}).content.decode()
    assert html.count('<nav class="pager"') == 2
    assert 'name="match" value="state=available"' in html and "all 120 matching" in html
    assert 'id="select-page"' in html
    operate = reverse("pools:operate", args=[p.pk, "refresh"])
    form = admin.get(operate, {"match": "state=available", "selection": 1})
    assert b"All 120 desktops matching the filter" in form.content
    assert b"<h1>Refresh 120 desktops of pool Big</h1>" in form.content
    posted = admin.post(
        operate,
        {
            "match": "state=available",
            "selection": "True",
            "when": "now",
            "logoff_policy": "wait",
            "grace_seconds": 300,
        },
    )
    assert posted.status_code == 302, posted.context["form"].errors
    operation = Operation.objects.get(kind="refresh")
    assert operation.tasks.count() == 120
    assert not operation.tasks.exclude(desktop__state=S.AVAILABLE).exists()
    # A filter that no longer matches anything is said, not "the whole pool".
    none = admin.post(
        operate,
        {
            "match": "q=nobody",
            "selection": "True",
            "when": "now",
            "logoff_policy": "wait",
            "grace_seconds": 300,
        },
    )
    assert none.status_code == 200
    assert Operation.objects.filter(kind="refresh").count() == 1


def test_a_deselected_datastore_says_vacated_once_empty(admin, pool):
    p, zulu = pool["pool"], pool["zulu"]
    empty = factories.datastore(p.endpoint, "emptied", GIB)
    PoolDatastore.objects.create(pool=p, datastore=empty, selected=False)
    PoolDatastore.objects.filter(pool=p, datastore=zulu).update(selected=False)
    html = admin.get(reverse("pools:detail", args=[p.pk])).content.decode()
    assert "<td>emptied</td>" in html and html.count("no (vacated)") == 1
    assert html.count("no (to be vacated)") == 1
