"""POST /api/v1/agent/sessions: desktops' agents report logons, logoffs and heartbeats.

vCenter cannot tell who is logged on, so the desktops tell us (docs/agent/). An agent signs
in with its endpoint's agent token ("Authorization: Bearer lca_..."), made by an
administrator on the Hypervisors page. The token is write-only: this is the one route that
takes it (every other route refuses it, and this one refuses a personal token), and it is
accepted only for desktops of its endpoint's pools. What a report does, and what the answer
asks the agent to do, is composer/agent_sessions.py.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import authentication, exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from composer import agent_sessions
from pools.models import HypervisorEndpoint
from portal.api.problems import problem_response

# A report is a few short fields: anything bigger is not one (and is never read whole).
MAX_BODY_BYTES = 4096


class Agent:
    """Who an agent request acts as: its endpoint, never a user of the portal."""

    is_authenticated = True
    is_active = True
    pk = None

    def __init__(self, endpoint: HypervisorEndpoint):
        self.endpoint = endpoint

    def __str__(self):
        return f"agent of {self.endpoint.name}"


class AgentTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # answered 401 by the permission below
        try:
            secret = header[1].decode("ascii") if len(header) == 2 else ""
        except UnicodeDecodeError:
            secret = ""
        endpoint = agent_sessions.endpoint_for_token(secret)
        if endpoint is None:
            raise exceptions.AuthenticationFailed("This route takes a valid agent token.")
        return Agent(endpoint), endpoint

    def authenticate_header(self, request):
        return self.keyword


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = AgentTokenAuthentication
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A hypervisor endpoint's agent token (Hypervisors page): lca_...",
        }


class IsAgent(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, HypervisorEndpoint)


class AgentThrottle(SimpleRateThrottle):
    """REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["agent"] per endpoint and address: each
    desktop reports from its own address, so a fleet of thousands stays within it while a
    leaked token flooding from one host does not."""

    scope = "agent"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, HypervisorEndpoint):
            return None
        return self.cache_format % {
            "scope": self.scope,
            "ident": f"{request.auth.pk}-{self.get_ident(request)}",
        }


class ReportSerializer(serializers.Serializer):
    desktop = serializers.CharField(max_length=15, help_text="The desktop's (computer) name.")
    event = serializers.ChoiceField(choices=agent_sessions.EVENTS)
    user = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        default="",
        help_text="Who is logged on: required for logon; for a heartbeat, empty means nobody.",
    )
    at = serializers.DateTimeField(
        required=False, help_text="When it happened (default: now); older events are ignored."
    )

    def validate(self, data):
        if data["event"] == agent_sessions.LOGON and not data.get("user"):
            raise serializers.ValidationError({"user": "A logon names the user."})
        return data


class ActionSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["message", "logoff"])
    text = serializers.CharField(required=False, help_text="message: what to show the user.")
    in_seconds = serializers.IntegerField(
        required=False, help_text="logoff: log the user off this many seconds from now."
    )


class ReportAnswerSerializer(serializers.Serializer):
    desktop = serializers.CharField()
    user = serializers.CharField(help_text="Who the portal now has logged on (empty: nobody).")
    ignored = serializers.BooleanField()
    note = serializers.CharField(required=False)
    actions = ActionSerializer(many=True)


class SessionReport(APIView):
    """A desktop's agent reports a logon, a logoff or a heartbeat, and receives what
    maintenance asks of it (a message to show, a logoff when the grace period ends)."""

    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]
    throttle_classes = [AgentThrottle]

    @extend_schema(
        request=ReportSerializer,
        responses={
            200: ReportAnswerSerializer,
            400: OpenApiResponse(description="Bad report (problem+json)."),
            413: OpenApiResponse(description="Body too large (problem+json)."),
            401: OpenApiResponse(description="No or bad agent token (problem+json)."),
            404: OpenApiResponse(description="No such desktop on this endpoint."),
            429: OpenApiResponse(description="Too many reports (problem+json)."),
        },
        tags=["desktop agents"],
    )
    def post(self, request):
        endpoint = request.auth
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:  # refused before it is read
            return problem_response(413, f"A report is at most {MAX_BODY_BYTES} bytes.")
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        serializer = ReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            outcome = agent_sessions.report(
                endpoint,
                data["desktop"],
                data["event"],
                user=data.get("user", ""),
                at=data.get("at"),
                request=request._request,
            )
        except agent_sessions.NotFound:
            return problem_response(
                404, f"No desktop {data['desktop']} on endpoint {endpoint.name}."
            )
        body = {
            "desktop": outcome.desktop,
            "user": outcome.session_user,
            "ignored": outcome.ignored,
            "actions": outcome.actions,
        }
        if outcome.note:
            body["note"] = outcome.note
        return Response(body)
