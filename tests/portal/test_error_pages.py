"""The portal's own error pages (issue 10, items 12 and 15): an unknown address or object is
the portal's 404, in its style, with DEBUG on (`make run`) as with it off; and the favicon is
there, so no page logs a 404 for it."""

import pytest
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_address_or_object_is_the_portals_own_404(client, users, debug):
    client.force_login(users["admin"])
    with override_settings(DEBUG=debug):
        for path in ("/no-such-page/", "/pools/987654/", reverse("composer:operation", args=[9])):
            page = client.get(path)
            assert page.status_code == 404, path
            html = page.content.decode()
            assert "There is nothing at this address" in html, path
            assert 'href="/static/portal/portal.css"' in html  # the portal's style
            assert "URLconf" not in html and "admin/rq/" not in html  # no pattern listed
            assert "Linked-clone portal" in html and "Sign out" in html  # its header, signed in
        anonymous = client.__class__()
        assert "There is nothing at this address" in anonymous.get("/nope/").content.decode()


def test_the_favicon_is_there_for_anyone(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"] == "/static/portal/favicon.svg"
    page = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/portal/favicon.svg"' in page


def test_a_fault_is_the_portals_own_500_page(client, users, monkeypatch):
    def broken(q):
        raise RuntimeError("a bug")

    monkeypatch.setattr("portal.helpdesk.search_desktops", broken)
    client.raise_request_exception = False
    client.force_login(users["helpdesk"])
    with override_settings(DEBUG=False):
        page = client.get(reverse("helpdesk"), {"q": "x"})
    assert page.status_code == 500
    html = page.content.decode()
    assert "Something went wrong" in html and 'href="/static/portal/portal.css"' in html
    assert "a bug" not in html and "Traceback" not in html
