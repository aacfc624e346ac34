"""The log formats (settings.LOG_FORMAT): today's plain lines, or one JSON object a line.

Every line says what it is about, when that is known: the request (its id, the signed-in
user), the operation and desktop (composer/log_context.py), the job and the worker. The
plain format appends them compactly ("req=ab12 user=ada op=12 desktop=345"), the JSON format
as fields, so an operator greps or filters either by the same ids (README, "Logs").

The request is taken from the record when the logger was given it (Django's request and
security loggers are, also for the line it writes once the middleware is done), else from
the request being answered now (set by portal.middleware.RequestIdMiddleware).
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from django.http import HttpRequest
from django.utils.functional import empty

from composer import log_context

# The request this thread answers now; None outside requests (jobs, commands).
current_request: ContextVar[HttpRequest | None] = ContextVar("current_request", default=None)

# Short names for the plain format, in its order.
PLAIN_NAMES = {
    "request_id": "req",
    "user": "user",
    "operation_id": "op",
    "desktop_id": "desktop",
    "desktop": "desktop_name",
    "job_id": "job",
}


def _username(request: HttpRequest) -> str:
    """The signed-in user's name, if the request has worked out who it is: a log line must
    not query the session (it may be written because the database is away)."""
    user = request.__dict__.get("user")  # set by AuthenticationMiddleware, or DRF's login
    if user is None or getattr(user, "_wrapped", None) is empty:
        return ""
    return user.get_username() if user.is_authenticated else ""


def context(record: logging.LogRecord) -> dict:
    """The ids a line carries: the request's, the engine's (composer/log_context.py), and
    any the caller gave the logger (`extra=`), which win."""
    fields: dict = {}
    request = getattr(record, "request", None)
    if not isinstance(request, HttpRequest):  # the dev server passes its socket
        request = current_request.get()
    if request is not None:
        fields["request_id"] = getattr(request, "request_id", None)
        fields["user"] = _username(request)
    fields.update(log_context.current())
    for name in (*log_context.FIELDS, "user"):
        value = getattr(record, name, None)
        if value not in (None, ""):
            fields[name] = value
    return {name: value for name, value in fields.items() if value not in (None, "")}


class PlainFormatter(logging.Formatter):
    """Today's format, with the ids after the message (before a traceback)."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = context(record)
        ids = " ".join(
            f"{short}={fields[name]}" for name, short in PLAIN_NAMES.items() if name in fields
        )
        return f"{line}  {ids}" if ids else line


# Characters a JSON encoder leaves as they are that some readers take for a line break or
# cannot write: C1 controls (U+0085 is a newline to Python's splitlines), the Unicode line
# and paragraph separators, and lone surrogates (a path undecodable as UTF-8).
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the ids known
    (see context()), the status of a request line, and a traceback as one field."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a call with arguments that do not fit its message
            message = f"{record.msg!r} % {record.args!r}"
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **context(record),
        }
        status = getattr(record, "status_code", None)
        if isinstance(status, int):
            line["status"] = status
        line.update(_gunicorn_access(record))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        return _UNSAFE.sub(_escape, text)


def _gunicorn_access(record: logging.LogRecord) -> dict:
    """gunicorn's access line (deploy/gunicorn.conf.py) logs after the request's context is
    gone; its atoms still have the status and the X-Request-ID the portal answered with, so
    the line is found by the same request_id as the request's own lines."""
    if record.name != "gunicorn.access" or not isinstance(record.args, dict):
        return {}
    fields = {}
    request_id = record.args.get("{x-request-id}o")
    if request_id and request_id != "-":
        fields["request_id"] = request_id
    if str(record.args.get("s", "")).isdigit():
        fields["status"] = int(record.args["s"])
    return fields
