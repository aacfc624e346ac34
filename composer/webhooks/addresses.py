"""Which URLs a webhook may post to: https only. Plain http only to this machine (127.0.0.1,
::1, localhost), and only with settings.DEBUG or WEBHOOKS_ALLOW_HTTP (a local receiver in
development and tests): the body and its signature must not cross a network in clear."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

MAX_LENGTH = 2000
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def http_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "WEBHOOKS_ALLOW_HTTP", False))


def check_url(url: str) -> str:
    """The URL, stripped, if a webhook may post to it; else ValidationError saying why."""
    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter the receiver's URL.", code="required")
    if len(url) > MAX_LENGTH:
        raise ValidationError(f"At most {MAX_LENGTH} characters.", code="max_length")
    if any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in url):
        raise ValidationError("The URL contains spaces or control characters.", code="invalid")
    try:
        URLValidator(schemes=["http", "https"])(url)
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port out of range)
    except (ValidationError, ValueError):
        raise ValidationError(
            "Enter a full URL, such as https://hooks.example.com/portal.", code="invalid"
        ) from None
    if parts.username or parts.password:
        raise ValidationError(
            "No credentials in the URL: it is shown in lists. Receivers check the signature.",
            code="credentials",
        )
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and not (host in LOOPBACK and http_allowed()):
        raise ValidationError(
            "Use an https:// URL: deliveries are signed but not encrypted otherwise.",
            code="https_required",
        )
    return url
