"""The Webhooks pages (administrators only): the hooks, a new one (its secret shown once),
a hook's settings and deliveries, rotating its secret, a test event, deleting it. What each
action does, its permission check and its audit event are in composer/webhooks/hooks.py."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from composer.models import Webhook
from composer.webhooks import EVENTS, hooks
from portal.permissions import require
from portal.webhook_forms import WebhookForm

MANAGE = hooks.MANAGE
DELIVERIES_PER_PAGE = 25


@require(MANAGE, action="view_webhooks")
def webhook_list(request):
    listed = Webhook.objects.annotate(
        delivery_count=Count("deliveries"), last_delivery=Max("deliveries__created_at")
    ).order_by("name", "id")
    return render(request, "portal/webhook_list.html", {"hooks": listed, "events": EVENTS})


@never_cache
@require(MANAGE, action="create_webhook")
def webhook_create(request):
    form = WebhookForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            hook, secret = hooks.register(request.user, form.spec(), request=request)
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            return _show_secret(request, hook, secret, created=True)
    return render(request, "portal/webhook_form.html", {"form": form})


@require(MANAGE, action="view_webhook")
def webhook_detail(request, pk: int):
    hook = get_object_or_404(Webhook, pk=pk)
    form = WebhookForm.for_hook(hook, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            hooks.change(request.user, hook, form.spec(), request=request)
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Webhook {form.cleaned_data['name']} saved.")
            return redirect("webhooks:detail", hook.pk)
    page = Paginator(hooks.deliveries(hook), DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "portal/webhook_detail.html", {"hook": hook, "form": form, "page": page})


@never_cache
@require_POST
@require(MANAGE, action="rotate_webhook_secret")
def webhook_rotate(request, pk: int):
    hook = get_object_or_404(Webhook, pk=pk)
    secret = hooks.rotate_secret(request.user, hook, request=request)
    return _show_secret(request, hook, secret, created=False)


@require_POST
@require(MANAGE, action="test_webhook")
def webhook_test(request, pk: int):
    hook = get_object_or_404(Webhook, pk=pk)
    hooks.send_test(request.user, hook, request=request)
    messages.info(request, f"Test event queued for {hook.name}; its delivery is listed below.")
    return redirect("webhooks:detail", hook.pk)


@require(MANAGE, action="delete_webhook")
def webhook_delete(request, pk: int):
    """GET asks to confirm; POST deletes."""
    hook = get_object_or_404(Webhook, pk=pk)
    if request.method == "POST":
        hooks.delete(request.user, hook, request=request)
        messages.success(request, f"Webhook {hook.name} deleted.")
        return redirect("webhooks:list")
    return render(request, "portal/webhook_delete.html", {"hook": hook})


def _show_secret(request, hook, secret: str, created: bool):
    # Shown in this answer only (never cached, never stored in the session).
    return render(
        request,
        "portal/webhook_secret.html",
        {"hook": hook, "secret": secret, "created": created},
    )
