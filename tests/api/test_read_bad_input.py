"""Whatever a script sends to a read route, the answer is a page (maybe empty) or a 400
problem naming the parameter, never a 500: a non-number id, an unknown state, a NUL byte,
a 10,000-character value, a cursor that is not one of ours."""

from __future__ import annotations

from base64 import b64encode
from urllib.parse import urlencode

import pytest

from tests import factories as f

pytestmark = pytest.mark.django_db

LISTS = [
    "hypervisors/",
    "datastores/",
    "images/",
    "image-versions/",
    "replicas/",
    "pools/",
    "desktops/",
    "operations/",
    "audit/",
    "desktops/{desktop}/history/",
    "operations/{operation}/desktops/",
]
HUGE = "9" * 30
LONG = "x" * 10_000


def _cursor(**tokens) -> str:
    return b64encode(urlencode(tokens).encode()).decode()


BAD_CURSORS = [
    "!!!",
    "é",
    "cD0x!",  # p=1 and a character base64 has not
    _cursor(p="abc"),
    _cursor(p=HUGE),
    _cursor(p="1\x00"),
    _cursor(p="1", o="-3"),
    _cursor(p="1", r="x"),
]
# (route, parameters, status): 400 for a value that cannot be one, 200 (empty) for one
# that simply matches nothing.
FILTERS = [
    ("desktops/", {"pool": "not-a-pool"}, 200),
    ("desktops/", {"pool": HUGE}, 200),
    ("desktops/", {"pool": "-1"}, 200),
    ("desktops/", {"pool": LONG}, 400),
    ("desktops/", {"pool": "a\x00"}, 400),
    ("desktops/", {"state": "melting"}, 400),
    ("desktops/", {"flag": "x"}, 400),
    ("desktops/", {"q": "\x00"}, 400),
    ("desktops/", {"q": LONG}, 400),
    ("desktops/", {"user": "\x00"}, 400),
    ("desktops/", {"datastore": "abc"}, 400),
    ("desktops/", {"datastore": HUGE}, 400),
    ("desktops/", {"image_version": "0"}, 400),
    ("desktops/", {"q": "%_'\"\\"}, 200),
    ("datastores/", {"endpoint": "x"}, 400),
    ("replicas/", {"status": "gone"}, 400),
    ("replicas/", {"datastore": HUGE}, 400),
    ("image-versions/", {"image": "1.5"}, 400),
    ("operations/", {"pool": "\x00"}, 400),
    ("operations/", {"pool": HUGE}, 200),
    ("operations/", {"requested_by": LONG}, 400),
    ("operations/", {"status": ""}, 200),
    ("operations/{operation}/desktops/", {"status": "x"}, 400),
    ("audit/", {"action": "no-such-action"}, 400),
    ("audit/", {"target": "\x00"}, 400),
]


@pytest.fixture
def ids(users):
    endpoint = f.endpoint()
    ds = f.datastore(endpoint, "ds")
    pool = f.pool("Sales", f.version(f.image(endpoint)), [ds])
    desktop = f.desktop(pool, "SAL-1", ds)
    operation = f.operation(pool, users["admin"])
    f.task(operation, desktop)
    return {"desktop": desktop.pk, "operation": operation.pk}


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    return response.json()


def test_a_bad_cursor_or_page_size_is_a_400(client, users, ids):
    client.force_login(users["admin"])
    for route in LISTS:
        url = "/api/v1/" + route.format(**ids)
        for cursor in BAD_CURSORS:
            response = client.get(url, {"cursor": cursor})
            if response.status_code == 200:
                # Pools go by name: any text is a position among names, a page from there.
                assert route == "pools/", (route, cursor)
            else:
                assert "cursor" in _problem(response, 400)["errors"], (route, cursor)
        for size in ("abc", "-1", "0", "1001", HUGE, "\x00"):
            _problem(client.get(url, {"page_size": size}), 400)


def test_a_bad_filter_is_a_400_or_matches_nothing(client, users, ids):
    client.force_login(users["admin"])
    for route, params, status in FILTERS:
        response = client.get("/api/v1/" + route.format(**ids), params)
        where = (route, {k: v[:20] for k, v in params.items()}, response.content[:200])
        if any("\x00" in value for value in params.values()):
            # Refused before any view reads it (portal/middleware.py), and audited.
            assert "NUL" in _problem(response, 400)["detail"], where
        elif status == 400:
            assert list(_problem(response, 400)["errors"]) == list(params), where
        else:
            assert response.status_code == 200, where
            if "status" not in params:
                assert response.json()["results"] == [], where


@pytest.mark.parametrize(
    "route",
    [
        "hypervisors",
        "datastores",
        "images",
        "image-versions",
        "replicas",
        "pools",
        "desktops",
        "operations",
    ],
)
def test_an_id_no_row_can_have_is_a_404(client, users, ids, route):
    client.force_login(users["admin"])
    for pk in ("0", "999999", HUGE):
        _problem(client.get(f"/api/v1/{route}/{pk}/"), 404)
    for sub in ("desktops/{}/history/", "operations/{}/desktops/"):
        _problem(client.get("/api/v1/" + sub.format(HUGE)), 404)


def test_the_next_link_of_a_page_reads_the_next_page(client, users, ids):
    """The cursor check lets every real cursor through, ordered by id or by name."""
    client.force_login(users["admin"])
    endpoint = f.endpoint("other")
    version = f.version(f.image(endpoint))
    for name in ("B", "A", "C"):
        f.pool(name, version)
    names, link = [], "/api/v1/pools/?page_size=1"
    while link:
        body = client.get(link).json()
        names += [p["name"] for p in body["results"]]
        link = body["next"]
    assert names == ["A", "B", "C", "Sales"]
    previous = client.get("/api/v1/pools/?page_size=3").json()
    back = client.get(client.get(previous["next"]).json()["previous"]).json()
    assert [p["name"] for p in back["results"]] == ["A", "B", "C"]
