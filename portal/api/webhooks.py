"""Webhooks over the API (administrators only): list, create (the answer holds the secret,
once), read, delete a hook, and list its deliveries, newest first. The same service as the
pages (composer/webhooks/hooks.py) checks, audits and creates."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from composer.models import Webhook, WebhookDelivery
from composer.webhooks import EVENTS, hooks
from composer.webhooks.addresses import MAX_LENGTH
from portal.api.access import requires
from portal.api.pagination import CursorPages

Manage = requires(hooks.MANAGE, action="manage_webhooks")


class NewestFirst(CursorPages):
    # CursorPagination orders by its own attribute, not the view's.
    ordering = "-id"


class WebhookSerializer(serializers.ModelSerializer):
    url = serializers.CharField(max_length=MAX_LENGTH, help_text="https:// only.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENTS)), min_length=1, max_length=len(EVENTS)
    )
    active = serializers.BooleanField(default=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "events", "active", "created_by", "created_at"]
        read_only_fields = ["id", "created_by", "created_at"]


class CreatedWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every delivery (README, Webhooks). Shown in this answer only.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "operation",
            "payload",
            "status",
            "attempts",
            "response_status",
            "response_excerpt",
            "error",
            "next_attempt_at",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class WebhookList(generics.ListCreateAPIView):
    """The webhooks; POST registers one and answers with its secret, once."""

    serializer_class = WebhookSerializer
    permission_classes = [Manage]
    queryset = Webhook.objects.select_related("created_by")

    @extend_schema(responses={201: CreatedWebhookSerializer})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook, secret = hooks.register(
            request.user, hooks.HookSpec(**serializer.validated_data), request=request
        )
        hook.secret = secret
        return Response(CreatedWebhookSerializer(hook).data, status=status.HTTP_201_CREATED)


class WebhookDetail(generics.RetrieveDestroyAPIView):
    """One webhook (never its secret); DELETE removes it with its deliveries."""

    serializer_class = WebhookSerializer
    permission_classes = [Manage]
    queryset = Webhook.objects.select_related("created_by")

    def perform_destroy(self, instance):
        hooks.delete(self.request.user, instance, request=self.request)


class WebhookDeliveries(generics.ListAPIView):
    """A webhook's deliveries, newest first, with each one's answer."""

    serializer_class = DeliverySerializer
    permission_classes = [Manage]
    pagination_class = NewestFirst

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator
            return WebhookDelivery.objects.none()
        hook = get_object_or_404(Webhook, pk=self.kwargs["pk"])
        return WebhookDelivery.objects.filter(webhook=hook)
