"""Writing the audit log. Call `record()` inside the transaction of the change it records."""

from __future__ import annotations

from typing import Any

from portal.models import AuditEvent
from portal.roles import role_of

Outcome = AuditEvent.Outcome


def record(
    *,
    actor,
    action: str,
    outcome: str,
    target: Any = None,
    operation=None,
    parameters: dict | None = None,
    message: str = "",
    request=None,
) -> AuditEvent:
    target_type = target._meta.model_name if target is not None else ""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=actor.get_username()
        if actor is not None and actor.is_authenticated
        else "anonymous",
        role=role_of(actor),
        action=action,
        target_type=target_type,
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_name=str(target) if target is not None else "",
        outcome=outcome,
        message=message,
        parameters=parameters or {},
        operation=operation,
        request_id=getattr(request, "request_id", "") if request is not None else "",
        ip=_client_ip(request),
    )


def _client_ip(request) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None
