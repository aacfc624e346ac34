"""`Idempotency-Key` on the POSTs that start work: a retried request (a lost answer, a CI job
run again) with the same key from the same user gets the first request's answer, status and
body, instead of starting the work twice.

The key is claimed by inserting its row, committed at once, before the work starts: of two
identical requests at the same moment the unique constraint lets one through; the other
waits for that one's answer and returns it. The same key with another request (method, path
or body) is refused with 422. An answer of 5xx or 429 is not kept, so a retry may succeed.
Keys are kept for KEEP (24 h), then forgotten.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from functools import wraps

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from portal.api.problems import problem_response
from portal.models import IdempotencyKey

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
# How long a retry waits for the first request's answer before telling the client to retry.
WAIT_SECONDS = 60.0
POLL_SECONDS = 0.05
# A claimed key still unanswered after this long was left by a request that died with its
# process: no request lives this long (gunicorn's timeout is shorter).
ABANDONED = timedelta(minutes=5)
MAX_LENGTH = 255


def idempotent(handler):
    """Decorates an APIView's post(): honours the Idempotency-Key header when there is one."""

    @wraps(handler)
    def post(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        _check(key)
        fingerprint = _fingerprint(request)
        _forget_expired()
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            claimed = _claim(request.user, key, fingerprint)
            if claimed is not None:
                return _run(claimed, handler, view, request, *args, **kwargs)
            row = IdempotencyKey.objects.filter(user=request.user, key=key).first()
            if row is None:
                continue  # the first request failed and let the key go: this one runs
            if row.fingerprint != fingerprint:
                return problem_response(
                    422,
                    f"This {HEADER} was used with another request; use a new key.",
                    type="idempotency-key-reused",
                    title="Idempotency-Key reused",
                )
            if row.status_code is not None:
                return _replay(row)
            if row.created_at < timezone.now() - ABANDONED:
                # Its request died with its process (a killed web worker) before answering:
                # let the key go and run this one. The work itself cannot start twice: an
                # operation carries the key in its one-time token (submission_token), a pool
                # its unique name.
                IdempotencyKey.objects.filter(pk=row.pk, status_code__isnull=True).delete()
                continue
            if time.monotonic() > deadline:
                return problem_response(
                    409,
                    f"A request with this {HEADER} is still running; retry later.",
                    headers={"Retry-After": "5"},
                )
            time.sleep(POLL_SECONDS)

    return post


def submission_token(request) -> str:
    """Operation.submission for a request with a key: the services' own one-time token, made
    of the user, the key and the request, so an operation cannot start twice even if this
    module's row was let go (an answer lost to a 500 after the work was committed), and
    the operation path stays idempotent after the row's 24 h."""
    key = request.headers.get(HEADER)
    if not key:
        return ""
    seed = f"{request.user.pk}\0{key}\0{_fingerprint(request)}"
    return f"api-{hashlib.sha256(seed.encode()).hexdigest()[:60]}"


def _check(key: str) -> None:
    if not key or len(key) > MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise exceptions.ValidationError(
            {HEADER: [f"Give 1 to {MAX_LENGTH} printable ASCII characters (a UUID, say)."]}
        )


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _forget_expired() -> None:
    IdempotencyKey.objects.filter(created_at__lt=timezone.now() - KEEP).delete()


def _claim(user, key: str, fingerprint: str) -> IdempotencyKey | None:
    """The new row, committed, if no request holds the key yet; else None."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint)
    except IntegrityError:
        return None


def _run(row: IdempotencyKey, handler, view, request, *args, **kwargs) -> Response:
    try:
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            # As DRF's dispatch would answer it (problem+json), so the answer can be kept.
            response = view.handle_exception(exc)
    except BaseException:
        row.delete()  # an answer not known: the key is free for a retry
        raise
    if response.status_code >= 500 or response.status_code == 429:
        row.delete()
        return response
    row.status_code = response.status_code
    # Rendered as DRF will render it (JSON is the API's only renderer).
    row.body = JSONRenderer().render(response.data).decode()
    row.content_type = response.content_type or JSONRenderer.media_type
    row.save(update_fields=["status_code", "body", "content_type"])
    return response


def _replay(row: IdempotencyKey) -> HttpResponse:
    return HttpResponse(
        row.body,
        status=row.status_code,
        content_type=row.content_type,
        headers={"Idempotent-Replayed": "true"},
    )
