"""Sending a delivery: the RQ job (on the default queue, never inside an operation's job, so
a slow receiver holds up no operation), its retries, and the reconciler's catch-up.

An attempt is claimed on the row first (attempts goes up by one, fenced on the attempt the
job was queued for), so a job queued twice, by rq's scheduler and by `requeue_due`, sends
once. While it is under way its `next_attempt_at` is a lease: a worker killed mid-send
leaves the row due again once the lease passes, and `requeue_due` sends it again.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from composer.liveness import job_alive
from composer.models import WebhookDelivery
from composer.queue import RUN_WEBHOOK_DELIVERY, queue
from composer.webhooks.addresses import check_url
from composer.webhooks.events import PING
from composer.webhooks.signing import encode, signature

log = logging.getLogger(__name__)

Status = WebhookDelivery.Status

MAX_ATTEMPTS = 5
# Wait before attempts 2, 3, 4 and 5.
BACKOFF_SECONDS = (10, 60, 5 * 60, 30 * 60)
TIMEOUT_SECONDS = 5.0
EXCERPT_BYTES = 1024
# An attempt under way is presumed lost (its worker killed) after this long.
LEASE = timedelta(minutes=2)
# A delivery due this long ago and not sent: its job was lost (Redis restarted, never
# queued). Younger ones are left to rq's scheduler, which queues retries when due.
SETTLE = timedelta(seconds=30)
# Answers that say "try again later"; any other 4xx (and a redirect) will not change.
RETRY_STATUSES = {408, 429}
USER_AGENT = "linked-clone-portal-webhooks/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is the receiver's answer, not an instruction: following it would post the
    # body to a URL nobody checked (plain http, another host).
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def deliver(delivery_id: int, attempt: int) -> str:
    """Attempt `attempt` of a delivery: POST it, record the answer, schedule the next try."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.PENDING, attempts=attempt - 1
    ).update(attempts=attempt, next_attempt_at=now + LEASE)
    if not claimed:
        return f"delivery {delivery_id} attempt {attempt} is stale"
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    hook = delivery.webhook
    if not hook.active and delivery.event != PING:  # a test event tries a hook before it is on
        return _record(delivery, attempt, Status.FAILED, error="not sent: the webhook is off")
    try:
        url = check_url(hook.url)
    except ValidationError as exc:
        # Allowed when registered, no longer (WEBHOOKS_ALLOW_HTTP turned off since).
        return _record(delivery, attempt, Status.FAILED, error=f"not sent: {exc.messages[0]}")
    code, excerpt, error = post(url, delivery, hook.secret)
    if code is not None and 200 <= code < 300:
        return _record(delivery, attempt, Status.DELIVERED, code, excerpt)
    if code is not None and code < 500 and code not in RETRY_STATUSES:
        return _record(delivery, attempt, Status.FAILED, code, excerpt, error)
    if attempt >= MAX_ATTEMPTS:
        error = f"{error or f'HTTP {code}'}; gave up after {attempt} attempts"
        return _record(delivery, attempt, Status.FAILED, code, excerpt, error)
    retry_at = timezone.now() + timedelta(seconds=BACKOFF_SECONDS[attempt - 1])
    _record(delivery, attempt, Status.PENDING, code, excerpt, error, retry_at)
    _schedule(delivery, attempt + 1, retry_at)
    return f"delivery {delivery_id}: {error or code}; next attempt at {retry_at:%H:%M:%S}"


def post(url: str, delivery: WebhookDelivery, secret: str) -> tuple[int | None, str, str]:
    """POST the delivery. Returns the answer's status code (None when there was none), the
    first KB of its body, and what went wrong if anything did."""
    body = encode(delivery.payload)
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Portal-Event": delivery.event,
            "X-Portal-Delivery": str(delivery.pk),
            "X-Portal-Timestamp": timestamp,
            "X-Portal-Signature": signature(secret, timestamp, body),
        },
    )
    timeout = getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", TIMEOUT_SECONDS)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, _excerpt(response), ""
    except urllib.error.HTTPError as exc:  # an answer all the same: 3xx, 4xx, 5xx
        with exc:
            try:
                excerpt = _excerpt(exc)
            except (OSError, http.client.HTTPException):
                excerpt = ""
            where = f" to {exc.headers.get('Location', '')}" if 300 <= exc.code < 400 else ""
            return exc.code, excerpt, f"HTTP {exc.code} {exc.reason}{where}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # Timeouts, refused connections, TLS and DNS failures (URLError is an OSError).
        reason = getattr(exc, "reason", None) or exc
        return None, "", f"{type(reason).__name__}: {reason}"[:500] or "no answer"


def _excerpt(response) -> str:
    return _clean(response.read(EXCERPT_BYTES).decode("utf-8", errors="replace"))


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL.
    return text.replace("\x00", "\ufffd")


def _record(
    delivery: WebhookDelivery,
    attempt: int,
    status: str,
    code: int | None = None,
    excerpt: str = "",
    error: str = "",
    retry_at: datetime | None = None,
) -> str:
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempt, status=Status.PENDING).update(
        status=status,
        response_status=code,
        response_excerpt=excerpt,
        error=_clean(error),
        next_attempt_at=retry_at,
        delivered_at=now if status == Status.DELIVERED else None,
    )
    log.info("webhook delivery %s attempt %s: %s %s", delivery.pk, attempt, status, error)
    return f"delivery {delivery.pk}: {status}{f' ({code})' if code else ''}"


def _schedule(delivery: WebhookDelivery, attempt: int, when: datetime) -> None:
    # rq's scheduler (workers run --with-scheduler) queues it when due; if Redis is away,
    # requeue_due sends it once it is back.
    try:
        queue().enqueue_at(
            when,
            RUN_WEBHOOK_DELIVERY,
            delivery.pk,
            attempt,
            job_id=delivery.job_id(attempt),
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
    except redis.exceptions.RedisError as exc:
        log.warning("delivery %s retry not scheduled (%s): requeue_due sends it", delivery.pk, exc)


def requeue_due(now: datetime | None = None, limit: int = 500) -> int:
    """Queue the deliveries that are due but whose job is gone (never queued, Redis lost
    it, its worker was killed mid-send, rq's scheduler is not running). Idempotent: each
    attempt is sent once whatever the number of jobs for it. Runs from cron (composer/cron.py).
    """
    now = now or timezone.now()
    due = WebhookDelivery.objects.filter(
        status=Status.PENDING, next_attempt_at__lte=now - SETTLE
    ).order_by("next_attempt_at", "pk")[:limit]
    conn = queue().connection
    queued = 0
    for delivery in due.only("pk", "attempts"):
        attempt = delivery.attempts + 1
        job_id = delivery.job_id(attempt)
        if job_alive(job_id, conn) and not _only_scheduled(job_id, conn):
            continue
        queue().enqueue(
            RUN_WEBHOOK_DELIVERY,
            delivery.pk,
            attempt,
            job_id=job_id,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
        queued += 1
    return queued


def _only_scheduled(job_id: str, conn) -> bool:
    """A retry still waiting in rq's schedule although it is overdue: no scheduler runs it."""
    try:
        return Job.fetch(job_id, connection=conn).get_status() == JobStatus.SCHEDULED
    except NoSuchJobError:
        return False
