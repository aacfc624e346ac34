"""The Webhooks pages and API routes: administrators register a receiver (its secret shown
once), change, rotate, test and delete it, and read its deliveries; bad URLs are form
errors (400 problems over the API); nobody else gets in, and each refusal is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer import webhooks
from composer.models import Webhook, WebhookDelivery
from portal.models import ApiToken
from tests import webhook_receiver

pytestmark = pytest.mark.django_db

FORM = {"name": "CI", "url": "https://hooks.example.com/portal", "events": [webhooks.FINISHED]}


@pytest.fixture
def admin(client, users):
    client.force_login(users["admin"])
    return client


def audited(action):
    return list(AuditEvent.objects.filter(action=action).values_list("outcome", flat=True))


def test_an_administrator_creates_a_hook_and_sees_its_secret_once(admin):
    response = admin.post(reverse("webhooks:create"), {**FORM, "active": "on"})
    assert response.status_code == 200
    hook = Webhook.objects.get()
    assert (hook.name, hook.url, hook.events, hook.active) == (
        "CI",
        FORM["url"],
        [webhooks.FINISHED],
        True,
    )
    assert hook.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    for page in (reverse("webhooks:list"), reverse("webhooks:detail", args=[hook.pk])):
        shown = admin.get(page)
        assert shown.status_code == 200 and "CI" in shown.content.decode()
        assert hook.secret not in shown.content.decode()
    assert audited("create_webhook") == ["succeeded"]
    assert hook.secret not in str(AuditEvent.objects.values_list("parameters", flat=True))


@pytest.mark.parametrize(
    "url, error",
    [
        ("http://hooks.example.com/portal", "Use an https:// URL"),
        ("not-a-url", "Enter a full URL"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("http://127.0.0.1:9/hook", "Use an https:// URL"),  # not without the setting
    ],
)
def test_a_bad_url_is_a_form_error(admin, settings, url, error):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    response = admin.post(reverse("webhooks:create"), {**FORM, "url": url})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Webhook.objects.exists()


def test_a_nul_byte_is_refused_before_the_form(admin):
    # The site refuses a NUL byte in any request (portal/middleware.py): 400, audited.
    response = admin.post(reverse("webhooks:create"), {**FORM, "url": "https://h.example/\x00"})
    assert response.status_code == 400
    assert not Webhook.objects.exists()


def test_no_event_chosen_is_a_form_error(admin):
    response = admin.post(reverse("webhooks:create"), {**FORM, "events": []})
    assert "This field is required" in response.content.decode()
    assert not Webhook.objects.exists()


def test_change_rotate_and_delete_are_audited(admin, users):
    admin.post(reverse("webhooks:create"), FORM)
    hook = Webhook.objects.get()
    detail = reverse("webhooks:detail", args=[hook.pk])

    response = admin.post(
        detail, {"name": "CI 2", "url": FORM["url"], "events": [webhooks.STARTED]}
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.name, hook.events, hook.active) == ("CI 2", [webhooks.STARTED], False)

    old = hook.secret
    rotated = admin.post(reverse("webhooks:rotate", args=[hook.pk]))
    hook.refresh_from_db()
    assert hook.secret != old and hook.secret in rotated.content.decode()

    confirm = admin.get(reverse("webhooks:delete", args=[hook.pk]))
    assert "Delete webhook CI 2?" in confirm.content.decode()
    assert admin.post(reverse("webhooks:delete", args=[hook.pk])).status_code == 302
    assert not Webhook.objects.exists()
    for action in ("create_webhook", "change_webhook", "rotate_webhook_secret", "delete_webhook"):
        assert audited(action) == ["succeeded"], action


@pytest.mark.django_db(transaction=True)
def test_a_test_event_is_delivered_and_listed(admin, settings, run_jobs, redis_conn):
    settings.WEBHOOKS_ALLOW_HTTP = True
    receiver, server = webhook_receiver.start()
    try:
        receiver.script = [503]
        admin.post(reverse("webhooks:create"), {**FORM, "url": receiver.url})
        hook = Webhook.objects.get()
        admin.post(reverse("webhooks:test", args=[hook.pk]))
        run_jobs()
    finally:
        server.shutdown()
        server.server_close()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event, delivery.status, delivery.response_status) == ("ping", "pending", 503)
    page = admin.get(reverse("webhooks:detail", args=[hook.pk])).content.decode()
    assert "HTTP 503" in page and "answered 503" in page and ">Pending<" in page
    assert receiver.received[0].headers["X-Portal-Event"] == "ping"


def test_deliveries_are_newest_first_and_paged(admin, users):
    admin.post(reverse("webhooks:create"), FORM)
    hook = Webhook.objects.get()
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(webhook=hook, event=f"event-{i:02}", payload={}) for i in range(30)
    )
    first = admin.get(reverse("webhooks:detail", args=[hook.pk])).content.decode()
    assert "event-29" in first and "event-05" in first and "event-04" not in first
    assert "Page 1 of 2" in first
    second = admin.get(reverse("webhooks:detail", args=[hook.pk]) + "?page=2").content.decode()
    assert "event-04" in second and "event-29" not in second


@pytest.mark.parametrize("role", ["helpdesk", "auditor"])
def test_only_administrators_get_in_and_see_the_link(client, users, role):
    client.force_login(users[role])
    assert client.get(reverse("webhooks:list")).status_code == 403
    assert client.post(reverse("webhooks:create"), FORM).status_code == 403
    assert not Webhook.objects.exists()
    assert audited("view_webhooks") == ["denied"]
    assert audited("create_webhook") == ["denied"]
    home = client.get(reverse("helpdesk")).content.decode()
    assert reverse("webhooks:list") not in home
    client.force_login(users["admin"])
    assert reverse("webhooks:list") in client.get(reverse("helpdesk")).content.decode()


# -- the API ------------------------------------------------------------------------------


def bearer(user):
    _, secret = ApiToken.issue(user, "script")
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_creates_lists_and_deletes_hooks(client, users):
    auth = bearer(users["admin"])
    created = client.post(
        "/api/v1/webhooks/",
        {"name": "CI", "url": FORM["url"], "events": [webhooks.STARTED, webhooks.FINISHED]},
        content_type="application/json",
        headers=auth,
    )
    assert created.status_code == 201, created.content
    body = created.json()
    hook = Webhook.objects.get()
    assert body["secret"] == hook.secret and body["active"] is True
    assert body["created_by"] == users["admin"].username

    listed = client.get("/api/v1/webhooks/", headers=auth).json()["results"]
    assert [h["name"] for h in listed] == ["CI"] and "secret" not in listed[0]
    one = client.get(f"/api/v1/webhooks/{hook.pk}/", headers=auth).json()
    assert "secret" not in one

    WebhookDelivery.objects.create(webhook=hook, event=webhooks.STARTED, payload={"a": 1})
    WebhookDelivery.objects.create(webhook=hook, event=webhooks.FINISHED, payload={"b": 2})
    deliveries = client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/", headers=auth).json()
    assert [d["event"] for d in deliveries["results"]] == [webhooks.FINISHED, webhooks.STARTED]
    assert client.get("/api/v1/webhooks/999/deliveries/", headers=auth).status_code == 404

    assert client.delete(f"/api/v1/webhooks/{hook.pk}/", headers=auth).status_code == 204
    assert not Webhook.objects.exists()
    assert audited("create_webhook") == ["succeeded"]
    assert audited("delete_webhook") == ["succeeded"]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "x", "url": "http://hooks.example.com/", "events": ["operation.started"]}, "url"),
        ({"name": "x", "url": "https://h.example/\u0000", "events": ["operation.started"]}, "url"),
        ({"name": "x", "url": "nope", "events": ["operation.started"]}, "url"),
        ({"name": "x", "url": "https://h.example/", "events": ["nope"]}, "events.0"),
        ({"name": "x", "url": "https://h.example/", "events": []}, "events"),
        ({"name": "x", "url": "https://h.example/", "events": "operation.started"}, "events"),
        ({"url": "https://h.example/", "events": ["operation.started"]}, "name"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_field(client, users, data, field):
    response = client.post(
        "/api/v1/webhooks/", data, content_type="application/json", headers=bearer(users["admin"])
    )
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("role", ["helpdesk", "auditor"])
def test_the_api_is_for_administrators_only(client, users, role):
    hook = Webhook.objects.create(name="x", url="https://h.example/", events=[webhooks.STARTED])
    auth = bearer(users[role])
    for method, url in (
        ("get", "/api/v1/webhooks/"),
        ("post", "/api/v1/webhooks/"),
        ("get", f"/api/v1/webhooks/{hook.pk}/deliveries/"),
        ("delete", f"/api/v1/webhooks/{hook.pk}/"),
    ):
        response = getattr(client, method)(url, headers=auth)
        assert response.status_code == 403, (method, url)
        assert response.json()["type"] == "forbidden"
    assert Webhook.objects.count() == 1
    assert audited("manage_webhooks") == ["denied"] * 4
