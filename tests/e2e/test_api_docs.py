"""The API's reference page works in a real browser, from our own static files, under the
site's Content-Security-Policy: Swagger UI renders every route, nothing is refused."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_api_reference_renders_under_the_policy(page, live_server):
    refused, errors, outside = [], [], []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None,
    )

    page.goto(f"{live_server.url}/api/docs/")

    # Swagger UI fetched the schema and drew one block per operation.
    page.locator(".opblock-summary-path", has_text="/api/v1/pools/").first.wait_for()
    assert page.locator(".opblock").count() >= 2
    assert refused == [] and errors == []
    assert outside == [], "the reference page must load nothing from outside the portal"
