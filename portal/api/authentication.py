"""Personal API tokens: "Authorization: Bearer lcp_...". A token acts with its user's role."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal.models import ApiToken

# last_used_at is written at most this often per token, so a busy script costs no write per
# call.
LAST_USED_EVERY = timedelta(minutes=1)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # not ours: the session may still sign the request in
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give one token after Bearer.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = ApiToken.find(secret)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        # The audit log names the token in every event recorded with this request
        # (audit.log.record reads it): views pass request=request._request to the services.
        request._request.api_token = token
        return token.user, token

    def authenticate_header(self, request):
        # Makes DRF answer 401 (with WWW-Authenticate), not 403, to a request without
        # credentials.
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the schema describes the token (drf-spectacular finds it by subclassing)."""

    target_class = BearerTokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token, lcp_... (made on the API tokens page, "
            "/accounts/tokens/, linked beside your name at the top of every page).",
        }
