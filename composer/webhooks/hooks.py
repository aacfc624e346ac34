"""Managing webhooks, for the pages and the API alike: each function checks permission
(administrators) and writes the audit event; the secret is returned only by `register` and
`rotate_secret`, and never goes into the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.log import Outcome, record
from composer.models import Webhook, WebhookDelivery
from composer.services.authorization import authorize
from composer.webhooks.addresses import check_url
from composer.webhooks.emitting import queue_deliveries
from composer.webhooks.events import EVENTS, PING
from composer.webhooks.signing import new_secret

MANAGE = "composer.manage_webhooks"


@dataclass
class HookSpec:
    name: str
    url: str
    events: list[str] = field(default_factory=list)
    active: bool = True

    def checked(self) -> HookSpec:
        """The spec with its URL and events checked (ValidationError by field)."""
        errors = {}
        name = (self.name or "").strip()
        if not name:
            errors["name"] = ["Give the webhook a name."]
        elif len(name) > 100:
            errors["name"] = ["At most 100 characters."]
        try:
            url = check_url(self.url)
        except ValidationError as exc:
            errors["url"] = exc.messages
            url = ""
        unknown = sorted(set(self.events) - set(EVENTS))
        if unknown:
            errors["events"] = [f"Unknown events: {', '.join(unknown)}."]
        elif not self.events:
            errors["events"] = ["Choose at least one event."]
        if errors:
            raise ValidationError(errors)
        events = [e for e in EVENTS if e in self.events]  # one order, no repeats
        return HookSpec(name=name, url=url, events=events, active=bool(self.active))


def _authorize(actor, action: str, request, target=None) -> None:
    authorize(
        actor,
        MANAGE,
        action=action,
        target=target,
        request=request,
        message="Your role does not allow you to manage webhooks.",
    )


def _audited(hook: Webhook) -> dict:
    return {"name": hook.name, "url": hook.url, "events": hook.events, "active": hook.active}


def register(actor, spec: HookSpec, request=None) -> tuple[Webhook, str]:
    """A new hook; returns it and its secret, to be shown once."""
    _authorize(actor, "create_webhook", request)
    spec = spec.checked()
    with transaction.atomic():
        hook = Webhook.objects.create(
            name=spec.name,
            url=spec.url,
            events=spec.events,
            active=spec.active,
            secret=new_secret(),
            created_by=actor,
        )
        record(
            actor=actor,
            action="create_webhook",
            outcome=Outcome.SUCCEEDED,
            target=hook,
            parameters=_audited(hook),
            request=request,
        )
    return hook, hook.secret


def change(actor, hook: Webhook, spec: HookSpec, request=None) -> Webhook:
    _authorize(actor, "change_webhook", request, hook)
    spec = spec.checked()
    with transaction.atomic():
        hook = Webhook.objects.select_for_update().get(pk=hook.pk)
        hook.name, hook.url, hook.events = spec.name, spec.url, spec.events
        hook.active = spec.active
        hook.save(update_fields=["name", "url", "events", "active"])
        record(
            actor=actor,
            action="change_webhook",
            outcome=Outcome.SUCCEEDED,
            target=hook,
            parameters=_audited(hook),
            request=request,
        )
    return hook


def rotate_secret(actor, hook: Webhook, request=None) -> str:
    """A new secret, effective for every delivery sent from now on (retries included)."""
    _authorize(actor, "rotate_webhook_secret", request, hook)
    with transaction.atomic():
        secret = new_secret()
        Webhook.objects.filter(pk=hook.pk).update(secret=secret)
        record(
            actor=actor,
            action="rotate_webhook_secret",
            outcome=Outcome.SUCCEEDED,
            target=hook,
            request=request,
        )
    hook.secret = secret
    return secret


def delete(actor, hook: Webhook, request=None) -> None:
    """The hook goes, with its deliveries (pending ones are not sent)."""
    _authorize(actor, "delete_webhook", request, hook)
    with transaction.atomic():
        record(
            actor=actor,
            action="delete_webhook",
            outcome=Outcome.SUCCEEDED,
            target=hook,
            parameters=_audited(hook),
            request=request,
        )
        Webhook.objects.filter(pk=hook.pk).delete()


def send_test(actor, hook: Webhook, request=None) -> WebhookDelivery:
    """A "ping" to this hook alone (active or not), listed with its deliveries."""
    _authorize(actor, "test_webhook", request, hook)
    now = timezone.now()
    payload = {
        "event": PING,
        "occurred_at": now.isoformat(),
        "webhook": {"id": hook.pk, "name": hook.name},
        "details": {"sent_by": actor.get_username()},
    }
    with transaction.atomic():
        (delivery,) = queue_deliveries([hook.pk], PING, payload, None, now)
        record(
            actor=actor,
            action="test_webhook",
            outcome=Outcome.REQUESTED,
            target=hook,
            request=request,
        )
    return delivery


def deliveries(hook: Webhook):
    return WebhookDelivery.objects.filter(webhook=hook).order_by("-id")
