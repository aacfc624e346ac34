"""Logging filters that keep the terminal readable (settings.LOGGING).

A denial is an ordinary answer to a user (the audit log has it), not a fault: one line at
INFO, without the traceback Django attaches to every 403. A request Django finds suspicious
(a Host header not in ALLOWED_HOSTS, a forged session...) is one WARNING line naming what,
not an ERROR with a traceback: it is about the request, not a fault of the portal. And the
development server's line per request, most of them htmx polls every 2 s, is not logged at
INFO: a request line is kept only when it failed (4xx other than a denial, 5xx).
"""

from __future__ import annotations

import logging


class QuietDenials(logging.Filter):
    """django.request: a 403 becomes one INFO line, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class QuietSecurity(logging.Filter):
    """django.security.*: one WARNING line, without the traceback. (On the handler: a
    logger's filter would not see its children, one per kind of suspicious operation.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class FailedRequestsOnly(logging.Filter):
    """django.server: keep the request lines of failures; django.request already said a
    denial once."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is None:
            return True  # not a request line (the server starting, an error)
        return status >= 400 and status != 403
