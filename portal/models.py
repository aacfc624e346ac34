"""The site's own data: each user's preferences and API tokens. (The audit log is its
own app: audit/.)"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class Preference(models.Model):
    """What a user chose for themselves: the time zone the portal shows moments in (empty:
    the server's, settings.TIME_ZONE). Copied into the session at sign-in, so reading it
    costs no query per request (portal/time_zones.py)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return f"{self.user} preferences"


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        """Neither revoked nor expired."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A personal token for the automation API (portal/api/). It acts with its user's role.

    The secret is shown once, when the token is made; only its SHA-256 is kept. A token is
    high-entropy random, so a plain hash is enough (a password needs a slow one; this does
    not), and `prefix`, its first characters, finds the row without scanning.
    """

    PREFIX = "lcp_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for (a pipeline, ...).")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, expires_at=None) -> tuple[ApiToken, str]:
        """A new token and its secret, which is never stored and cannot be read again."""
        prefix = secrets.token_hex(4)
        secret = f"{cls.PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(
            user=user, name=name, prefix=prefix, digest=digest(secret), expires_at=expires_at
        )
        return token, secret

    @classmethod
    def find(cls, secret: str) -> ApiToken | None:
        """The usable token with this secret, or None."""
        if not secret.startswith(cls.PREFIX) or len(secret) > 200:
            return None
        prefix = secret[len(cls.PREFIX) :].split("_", 1)[0]
        token = cls.objects.usable().select_related("user").filter(prefix=prefix).first()
        if token is None or not hmac.compare_digest(token.digest, digest(secret)):
            return None
        return token

    @property
    def usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user sent with an API request that starts work, and the answer
    it got (portal/api/idempotency.py): the same key again returns that answer instead of
    starting the work twice. While the first request runs, `status_code` is None."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The answer as sent, byte for byte (a JSON column would reorder its keys).
    body = models.TextField(blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")
        ]

    def __str__(self):
        return f"{self.user} {self.key}"
