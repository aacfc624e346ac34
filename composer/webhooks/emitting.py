"""Emitting an event: one delivery row per matching hook, written in the caller's
transaction, each queued once it commits. A rolled-back change emits nothing.

Most estates register no webhook: then emitting costs one query. With hooks, one more to
read the operation when given its id, and one insert for all the hooks together.
"""

from __future__ import annotations

from django.utils import timezone

from composer.models import Operation, Webhook, WebhookDelivery
from composer.queue import RUN_WEBHOOK_DELIVERY, enqueue_on_commit


def emit(event: str, operation: Operation | int, **details) -> list[WebhookDelivery]:
    """Emit `event` about `operation` (an instance, or its id: read only if a hook listens)
    with `details` (plain JSON values) to every active hook subscribed to it."""
    active = Webhook.objects.filter(active=True).order_by().values_list("pk", "events")
    hooks = [pk for pk, events in active if event in (events or ())]
    if not hooks:
        return []
    if not isinstance(operation, Operation):
        operation = Operation.objects.select_related("requested_by").get(pk=operation)
    now = timezone.now()
    payload = {
        "event": event,
        "occurred_at": now.isoformat(),
        "operation": describe(operation),
        "details": details,
    }
    return queue_deliveries(hooks, event, payload, operation.pk, now)


def queue_deliveries(hook_ids, event, payload, operation_id, now) -> list[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            webhook_id=pk,
            event=event,
            operation_id=operation_id,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for pk in hook_ids
    )
    for delivery in deliveries:
        enqueue_on_commit(RUN_WEBHOOK_DELIVERY, delivery.job_id(1), delivery.pk, 1)
    return deliveries


def describe(operation: Operation) -> dict:
    def when(value):
        return value.isoformat() if value else None

    return {
        "id": operation.pk,
        "kind": operation.kind,
        "pool": operation.pool_name,
        "pool_id": operation.pool_id,
        "status": operation.status,
        "requested_by": operation.requested_by.get_username(),
        "requested_at": when(operation.requested_at),
        "started_at": when(operation.started_at),
        "finished_at": when(operation.finished_at),
        "path": operation.get_absolute_url(),
    }
