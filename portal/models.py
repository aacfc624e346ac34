"""The site's own data: each user's preferences. (The audit log is its own app: audit/.)"""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
