"""Read the audit log: newest first, with the audit page's own filters (its form,
portal.audit_views.AuditFilterForm, so both filter alike), for auditors and administrators."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError

from audit.models import AuditEvent
from portal.api import serializers as s
from portal.api.access import requires
from portal.api.inventory import checked
from portal.audit_views import PAGE_FIELDS, ROLES, AuditFilterForm

# An empty value means "any", as on the page's form.
ISO_DAY = {"type": "string", "pattern": r"^(\d{4}-\d{2}-\d{2})?$"}
PARAMETERS = [
    OpenApiParameter("who", str, description="Part of the actor's name."),
    OpenApiParameter("role", str, enum=["", *ROLES]),
    OpenApiParameter("action", str, description="An action code, e.g. refresh (exact)."),
    OpenApiParameter("target", str, description="Part of the target's name."),
    OpenApiParameter("outcome", str, enum=["", *AuditEvent.Outcome.values]),
    OpenApiParameter("date_from", ISO_DAY, description="From this day (YYYY-MM-DD, portal time)."),
    OpenApiParameter("date_to", ISO_DAY, description="Up to this day (YYYY-MM-DD), included."),
]


class IsoDays(serializers.Serializer):
    """The form reads dates in several local formats; the API says ISO 8601 (YYYY-MM-DD), so
    it takes only that, as its schema documents."""

    date_from = serializers.RegexField(ISO_DAY["pattern"], required=False, allow_blank=True)
    date_to = serializers.RegexField(ISO_DAY["pattern"], required=False, allow_blank=True)


class AuditLog(generics.ListAPIView):
    """Audit events, newest first. Filters as on the audit page; a bad one is a 400 naming it."""

    serializer_class = s.AuditEventSerializer
    permission_classes = [requires("audit.view_audit", action="view_audit")]
    # Events are chained in id order as they are written: newest first by a unique key.
    ordering = "-id"

    def get_queryset(self):
        checked(IsoDays, self.request)
        form = AuditFilterForm(self.request.query_params)
        if not form.is_valid():
            raise ValidationError({field: list(errors) for field, errors in form.errors.items()})
        return form.filter(AuditEvent.objects.only("id", "hash", *PAGE_FIELDS))

    @extend_schema(parameters=PARAMETERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
