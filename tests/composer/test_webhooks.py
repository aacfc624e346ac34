"""Webhooks end to end: real operations run by real RQ jobs emit events, delivery jobs POST
them signed to a real local HTTP receiver, with retries, and never hold up an operation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from composer import services, webhooks
from composer.models import Operation, WebhookDelivery
from composer.queue import queue
from composer.webhooks import addresses, hooks
from composer.webhooks.delivery import LEASE, MAX_ATTEMPTS, requeue_due
from tests import webhook_receiver

pytestmark = pytest.mark.django_db(transaction=True)

Status = WebhookDelivery.Status
LATER = timedelta(hours=2)  # beyond any back-off but the last


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS_ALLOW_HTTP = True
    receiver, server = webhook_receiver.start()
    yield receiver
    receiver.release.set()
    server.shutdown()
    server.server_close()


def hook(users, receiver, events, **fields):
    spec = hooks.HookSpec(name=fields.pop("name", "ci"), url=receiver.url, events=events, **fields)
    return hooks.register(users["admin"], spec)


def provision(users, lab, size=2, name="Hooked"):
    return services.create_pool(
        users["admin"],
        services.PoolSpec(
            name=name,
            naming_pattern="HK-{n}",
            size=size,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )


def verified(request, secret) -> dict:
    """The body, once its signature is checked as the README tells a receiver to."""
    timestamp = request.headers["X-Portal-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(request.headers["X-Portal-Signature"], f"sha256={expected}")
    return json.loads(request.body)


def test_an_operation_sends_signed_started_and_finished_to_subscribers_only(
    users, lab, run_jobs, receiver
):
    ci, secret = hook(users, receiver, [webhooks.STARTED, webhooks.FINISHED])
    hook(users, receiver, [webhooks.PAUSED], name="pauses only")
    hook(users, receiver, [webhooks.STARTED, webhooks.FINISHED], name="off", active=False)

    operation = provision(users, lab)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    deliveries = list(WebhookDelivery.objects.order_by("pk"))
    assert [(d.webhook_id, d.event, d.status) for d in deliveries] == [
        (ci.pk, webhooks.STARTED, Status.DELIVERED),
        (ci.pk, webhooks.FINISHED, Status.DELIVERED),
    ]
    assert sorted(r.headers["X-Portal-Delivery"] for r in receiver.received) == sorted(
        str(d.pk) for d in deliveries
    )
    bodies = {r.headers["X-Portal-Event"]: verified(r, secret) for r in receiver.received}
    assert bodies[webhooks.STARTED]["operation"]["id"] == operation.pk
    assert bodies[webhooks.STARTED]["operation"]["status"] == "running"
    finished = bodies[webhooks.FINISHED]
    assert finished["details"]["outcome"] == "succeeded"
    assert finished["details"]["desktops"]["succeeded"] == 2
    assert finished["operation"]["pool"] == "Hooked"
    delivered = deliveries[0]
    assert delivered.response_status == 200 and delivered.attempts == 1
    assert delivered.response_excerpt.startswith("answered 200")
    assert len(delivered.response_excerpt) == 1024  # the first KB, its NUL made harmless
    assert "\x00" not in delivered.response_excerpt


def test_a_failed_desktop_and_the_outcome_are_sent(users, lab, run_jobs, receiver):
    _, secret = hook(users, receiver, [webhooks.DESKTOP_FAILED, webhooks.FINISHED])
    lab.sim.fail_desktop("HK-2", "customize")
    operation = provision(users, lab)
    run_jobs()

    bodies = [verified(r, secret) for r in receiver.received]
    assert [b["event"] for b in bodies] == [webhooks.DESKTOP_FAILED, webhooks.FINISHED]
    failed = bodies[0]["details"]
    assert failed["desktop"] == "HK-2" and failed["step"] == "customize"
    assert bodies[1]["details"]["outcome"] == Operation.Status.PARTIALLY_FAILED
    assert bodies[1]["operation"]["id"] == operation.pk


def test_pause_and_resume_are_sent(users, lab, run_jobs, receiver):
    _, secret = hook(users, receiver, [webhooks.PAUSED, webhooks.RESUMED, webhooks.FINISHED])
    operation = provision(users, lab, size=3)
    run_jobs(max_jobs=1)  # the operation's job: running, its desktops handed out
    services.pause(users["admin"], operation)
    run_jobs()
    services.resume(users["admin"], operation)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    bodies = [verified(r, secret) for r in receiver.received]
    assert [b["event"] for b in bodies] == [webhooks.PAUSED, webhooks.RESUMED, webhooks.FINISHED]
    assert bodies[0]["details"] == {"by": users["admin"].username}


def test_a_server_error_is_retried_until_delivered(users, lab, run_jobs, receiver):
    _, secret = hook(users, receiver, [webhooks.STARTED])
    receiver.script = [500]
    provision(users, lab)
    run_jobs()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        Status.PENDING,
        1,
        500,
    )
    assert delivery.next_attempt_at > timezone.now()  # backing off
    # Due: rq's scheduler would queue it; the cron catch-up does the same.
    assert requeue_due(now=timezone.now() + LATER) == 1
    run_jobs()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        Status.DELIVERED,
        2,
        200,
    )
    first, second = receiver.received
    assert first.headers["X-Portal-Delivery"] == second.headers["X-Portal-Delivery"]
    assert verified(first, secret) == verified(second, secret)


@pytest.mark.parametrize(
    "answers, status, attempts",
    [
        ([404], Status.FAILED, 1),  # will not change: no retry
        ([429, 408, 503, 502, 500], Status.FAILED, MAX_ATTEMPTS),  # bounded
        ([429, 200], Status.DELIVERED, 2),  # "later" is retried
    ],
)
def test_which_answers_are_retried(users, run_jobs, receiver, answers, status, attempts):
    ci, _ = hook(users, receiver, [webhooks.FINISHED])
    receiver.script = list(answers)
    delivery = hooks.send_test(users["admin"], ci)
    run_jobs()
    for _ in range(MAX_ATTEMPTS):
        requeue_due(now=timezone.now() + timedelta(days=1))
        run_jobs()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (status, attempts)
    assert len(receiver.received) == attempts
    assert {r.headers["X-Portal-Event"] for r in receiver.received} == {webhooks.PING}


def test_a_receiver_that_hangs_never_holds_up_the_operation(
    users, lab, run_jobs, receiver, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    hook(users, receiver, [webhooks.STARTED, webhooks.FINISHED])
    receiver.script = ["hang", "hang"]
    operation = provision(users, lab)
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    deliveries = list(WebhookDelivery.objects.all())
    assert {(d.status, d.attempts) for d in deliveries} == {(Status.PENDING, 1)}
    assert all("timed out" in d.error for d in deliveries)

    receiver.release.set()
    requeue_due(now=timezone.now() + LATER)
    run_jobs()
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {Status.DELIVERED}


def test_a_delivery_whose_worker_died_mid_send_is_sent_again(users, run_jobs, receiver):
    ci, _ = hook(users, receiver, [webhooks.FINISHED])
    delivery = hooks.send_test(users["admin"], ci)
    # Claimed by a worker that was then killed: attempt 1 taken, its job gone.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=timezone.now() + LEASE
    )
    queue().empty()
    assert requeue_due() == 0  # under its lease
    assert requeue_due(now=timezone.now() + LEASE * 2) == 1
    run_jobs()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.DELIVERED, 2)
    assert len(receiver.received) == 1


def statements(block) -> list[str]:
    """The SQL statements a block runs, transaction control (BEGIN, COMMIT, ...) aside."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as context:
        block()
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
    return [q["sql"].split()[0] for q in context if not q["sql"].startswith(control)]


def test_emitting_costs_one_query_without_hooks_and_does_not_grow_with_them(users, lab):
    operation = provision(users, lab)

    def emit():
        emitted.extend(webhooks.emit(webhooks.STARTED, operation.pk, note="x"))

    emitted = []
    assert statements(emit) == ["SELECT"] and emitted == []
    spec = hooks.HookSpec("a", "https://a.example/", [webhooks.PAUSED])
    hooks.register(users["admin"], spec)
    assert statements(emit) == ["SELECT"] and emitted == []  # a hook, not subscribed
    for name in "bcd":
        spec = hooks.HookSpec(name, f"https://{name}.example/", [webhooks.STARTED])
        hooks.register(users["admin"], spec)
    # The hooks, the operation with its requester, one insert for the three.
    assert statements(emit) == ["SELECT", "SELECT", "INSERT"]
    assert len(emitted) == 3


def test_only_administrators_manage_hooks_and_the_secret_is_not_audited(users, receiver):
    for role in ("helpdesk", "auditor"):
        with pytest.raises(PermissionDenied):
            hooks.register(users[role], hooks.HookSpec("x", receiver.url, [webhooks.STARTED]))
    ci, secret = hook(users, receiver, [webhooks.STARTED])
    new = hooks.rotate_secret(users["admin"], ci)
    assert new != secret and new.startswith("whsec_")
    hooks.delete(users["admin"], ci)
    actions = list(AuditEvent.objects.values_list("action", "outcome").order_by("pk"))
    assert actions == [
        ("create_webhook", "denied"),
        ("create_webhook", "denied"),
        ("create_webhook", "succeeded"),
        ("rotate_webhook_secret", "succeeded"),
        ("delete_webhook", "succeeded"),
    ]
    logged = json.dumps(list(AuditEvent.objects.values_list("parameters", "message")))
    assert secret not in logged and new not in logged


@pytest.mark.parametrize(
    "url, allow_http, ok",
    [
        ("https://hooks.example.com/portal?x=1", False, True),
        ("https://hooks.example.com:8443/p", False, True),
        ("http://127.0.0.1:8080/hook", True, True),
        ("http://localhost/hook", True, True),
        ("http://[::1]:9000/hook", True, True),
        ("http://127.0.0.1:8080/hook", False, False),  # not without the setting
        ("http://hooks.example.com/portal", True, False),  # never on a public host
        ("http://10.0.0.5/portal", True, False),
        ("ftp://hooks.example.com/", True, False),
        ("not a url", True, False),
        ("https://hooks.example.com/\x00", True, False),
        ("https://user:pw@hooks.example.com/", True, False),
        ("https://hooks.example.com:99999/", True, False),
        ("https:///nohost", True, False),
        ("", True, False),
        ("https://" + "a" * 2000 + ".com/", True, False),
    ],
)
def test_which_urls_a_hook_may_post_to(settings, url, allow_http, ok):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = allow_http
    if ok:
        assert addresses.check_url(url) == url
    else:
        with pytest.raises(ValidationError):
            addresses.check_url(url)
