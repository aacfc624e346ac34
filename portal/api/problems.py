"""Every API error as problem+json (RFC 9457): type, title, status, detail, and for a bad
request the field errors, so a script can show what to fix. Never a 500 on any input: the
handler maps our own refusals too (a permission, a refused operation, an unknown kind)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from composer import kinds
from composer.services import OperationRefused

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"

# The `type` of each problem: a stable name a script may branch on (RFC 9457 allows a
# relative URI; these are documented in the schema, not served).
TYPES = {
    400: "invalid-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
    500: "server-error",
    503: "unavailable",
}
TITLES = {
    400: "Invalid request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Server error",
    503: "Service unavailable",
}


class Conflict(exceptions.APIException):
    """409: the request is valid but the estate's state refuses it (desktops already under
    an operation, a plan no longer a draft). `extra` goes into the problem as is, e.g. the
    busy desktops and their operations."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail=None, **extra):
        super().__init__(detail)
        self.extra = extra


def problem(status_code: int, detail: str = "", **extra) -> dict:
    body = {
        "type": TYPES.get(status_code, "error"),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def problem_response(status_code: int, detail: str = "", headers=None, **extra) -> Response:
    return Response(
        problem(status_code, detail, **extra),
        status=status_code,
        content_type=CONTENT_TYPE,
        headers=headers,
    )


def json_problem(status_code: int, detail: str = "", **extra) -> JsonResponse:
    """For answers made outside DRF (an unknown /api/ address, a middleware's refusal)."""
    response = JsonResponse(problem(status_code, detail, **extra), status=status_code)
    response["Content-Type"] = CONTENT_TYPE
    return response


def _field_errors(detail) -> dict:
    """DRF's nested error detail as {"field": ["message", ...]} ("non_field_errors" for the
    request as a whole); nested fields are joined with dots."""
    out: dict[str, list[str]] = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            for i, sub in enumerate(value):
                walk(f"{prefix}.{i}" if prefix else str(i), sub)
        else:
            items = value if isinstance(value, list) else [value]
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in items)

    walk("", detail)
    return out


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        return problem_response(404, str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return problem_response(403, str(exc) or "Your role does not allow this.")
    if isinstance(exc, OperationRefused):
        return problem_response(409, str(exc))
    if isinstance(exc, kinds.UnknownKind):
        return problem_response(400, str(exc))
    if isinstance(exc, DjangoValidationError):
        errors = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return problem_response(400, "The request has errors.", errors=errors)
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(400, "The request has errors.", errors=_field_errors(exc.detail))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's 500 handling (logged) applies
    detail = exc.detail if isinstance(exc, exceptions.APIException) else ""
    extra = getattr(exc, "extra", {})
    headers = {
        k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")
    }
    return problem_response(response.status_code, str(detail), headers=headers, **extra)
