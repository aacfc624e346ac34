"""Rate limits for the API: each token (or signed-in browser session) gets
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["user"] calls, then 429 problem+json with
Retry-After until its window ends.

The counts live in the "throttle" cache (Redis, settings.CACHES), so every gunicorn worker
shares them; a local-memory cache would give each worker a budget of its own. Each count is
one atomic increment of a key per window (fixed windows): correct with any number of workers
at once, where DRF's own sliding list is read, changed and written back, losing calls that
race. If Redis is unreachable the API still answers, unthrottled, rather than fail every call.
"""

from __future__ import annotations

import logging

from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

log = logging.getLogger(__name__)

CACHE = "throttle"


class PerTokenRateThrottle(UserRateThrottle):
    """One budget per token: two scripts with two tokens do not slow each other down.
    Calls signed by a session count per user, anonymous ones per address."""

    scope = "user"

    def get_rate(self):
        # Read now, not when DRF was imported, so a changed setting applies (DRF's own
        # class keeps the rates it saw at import).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        token = getattr(request._request, "api_token", None)
        if token is not None:
            ident = f"token-{token.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"address-{self.get_ident(request)}"
        return f"{self.scope}:{ident}"

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        self.now = self.timer()
        window = int(self.now // self.duration)
        cache = caches[CACHE]
        try:
            # The key outlives its window, so it cannot expire between add and incr.
            cache.add(f"{key}:{window}", 0, timeout=2 * self.duration)
            count = cache.incr(f"{key}:{window}")
        except (RedisError, OSError, ValueError) as exc:
            log.warning("API rate limit not applied: its cache is unreachable (%s)", exc)
            return True
        return count <= self.num_requests

    def wait(self):
        """Seconds until the current window ends."""
        return self.duration - (self.now % self.duration)
