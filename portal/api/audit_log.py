"""Read the audit log: newest first, with the audit page's own filters (its form,
portal.audit_views.AuditFilterForm, so both filter alike), for auditors and administrators."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError

from audit.models import AuditEvent
from portal.api import serializers as s
from portal.api.access import requires
from portal.audit_views import PAGE_FIELDS, ROLES, AuditFilterForm

PARAMETERS = [
    OpenApiParameter("who", str, description="Part of the actor's name."),
    OpenApiParameter("role", str, enum=ROLES),
    OpenApiParameter("action", str, description="An action code, e.g. refresh (exact)."),
    OpenApiParameter("target", str, description="Part of the target's name."),
    OpenApiParameter("outcome", str, enum=AuditEvent.Outcome.values),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="From this day (portal time)."),
    OpenApiParameter("date_to", OpenApiTypes.DATE, description="Up to this day, included."),
]


class AuditLog(generics.ListAPIView):
    """Audit events, newest first. Filters as on the audit page; a bad one is a 400 naming it."""

    serializer_class = s.AuditEventSerializer
    permission_classes = [requires("audit.view_audit", action="view_audit")]
    # Events are chained in id order as they are written: newest first by a unique key.
    ordering = "-id"

    def get_queryset(self):
        form = AuditFilterForm(self.request.query_params)
        if not form.is_valid():
            raise ValidationError({field: list(errors) for field, errors in form.errors.items()})
        return form.filter(AuditEvent.objects.only("id", "hash", *PAGE_FIELDS))

    @extend_schema(parameters=PARAMETERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
