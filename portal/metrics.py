"""/metrics: the portal in Prometheus' text format, for a scraper that holds METRICS_TOKEN
and/or scrapes from an address in METRICS_ALLOW (README, Health checks and metrics).

Everything is read when scraped, from the database and Redis, by a collector on a registry
of its own (nothing on prometheus-client's global registry, nothing kept in the web process):
any gunicorn worker on any host answers the same. A scrape costs a fixed number of queries
and Redis round trips whatever the number of desktops, operations or workers: counts are
GROUP BY queries, Redis is read in two pipelined round trips (composer/runtime_state.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from audit.models import AuditEvent, VerifyRun
from composer import kinds, runtime_state
from composer.models import DesktopTask, Operation
from composer.queue import quick_connection
from pools.models import Datastore, Desktop, Pool
from pools.states import DesktopState

log = logging.getLogger(__name__)

MIB = 1024 * 1024
REDIS_TIMEOUT = 1.0


class PortalCollector:
    """Every metric, read at scrape time. Seven queries and two Redis round trips."""

    def collect(self):
        yield from desktops_by_pool_and_state()
        yield from operations_by_kind_and_status()
        yield failed_desktops_by_kind()
        yield from datastore_space()
        yield from audit_log()
        yield from machinery()


def desktops_by_pool_and_state():
    family = GaugeMetricFamily(
        "portal_desktops", "Desktops by pool and state.", labels=["pool", "state"]
    )
    counts: dict[str, dict[str, int]] = {}
    # From the pools, so a pool without desktops shows zeros; one GROUP BY over the
    # (pool, state) index.
    for name, state, n in (
        Pool.objects.values_list("name", "desktops__state").annotate(n=Count("desktops")).order_by()
    ):
        counts.setdefault(name, {})
        if state is not None:
            counts[name][state] = n
    # Every state of every pool, zeros included: a state a pool's desktops leave drops to 0
    # instead of vanishing from the graph.
    for pool in sorted(counts):
        for state in DesktopState.values:
            family.add_metric([pool, state], counts[pool].get(state, 0))
    yield family


def operations_by_kind_and_status():
    family = GaugeMetricFamily(
        "portal_operations",
        "Operations by kind and status (every operation ever asked for, by where it is now).",
        labels=["kind", "status"],
    )
    counts = {
        (kind, status): n
        for kind, status, n in Operation.objects.values_list("kind", "status")
        .annotate(n=Count("*"))
        .order_by()
    }
    for kind, _ in kinds.choices():
        for status in Operation.Status.values:
            family.add_metric([kind, status], counts.get((kind, status), 0))
    yield family


def failed_desktops_by_kind():
    family = CounterMetricFamily(
        "portal_desktop_failures",
        "Desktops that failed in an operation, by the operation's kind (failed desktop tasks).",
        labels=["kind"],
    )
    counts = dict(
        DesktopTask.objects.filter(status=DesktopTask.Status.FAILED)
        .values_list("operation__kind")
        .annotate(n=Count("*"))
        .order_by()
    )
    for kind, _ in kinds.choices():
        family.add_metric([kind], counts.get(kind, 0))
    return family


def datastore_space():
    labels = ["endpoint", "datastore"]
    used = GaugeMetricFamily(
        "portal_datastore_used_bytes", "Space used on the datastore.", labels=labels
    )
    committed = GaugeMetricFamily(
        "portal_datastore_committed_bytes",
        "Space the desktops on the datastore could grow to (each linked clone counted at "
        "its parent disk's full size; what over-commit levels are checked against).",
        labels=labels,
    )
    capacity = GaugeMetricFamily(
        "portal_datastore_capacity_bytes", "Size of the datastore.", labels=labels
    )
    datastores = list(Datastore.objects.filter(gone=False).select_related("endpoint"))
    committed_mb = Desktop.objects.committed_mb_by_datastore()
    for ds in sorted(datastores, key=lambda d: (d.endpoint.name, d.name)):
        names = [ds.endpoint.name, ds.name]
        used.add_metric(names, ds.used_mb * MIB)
        committed.add_metric(names, committed_mb.get(ds.pk, 0) * MIB)
        capacity.add_metric(names, ds.capacity_mb * MIB)
    yield from (used, committed, capacity)


def audit_log():
    last = VerifyRun.objects.order_by("-pk").first()
    length = GaugeMetricFamily("portal_audit_chain_events", "Events in the audit log's hash chain.")
    if last is not None and last.outcome == VerifyRun.Outcome.OK and last.last_event_id:
        # The count verify_audit found, plus the events since: an index range, not a count
        # of the whole log at every scrape.
        since = AuditEvent.objects.filter(pk__gt=last.last_event_id).count()
        length.add_metric([], last.events + since)
    else:
        length.add_metric([], AuditEvent.objects.count())
    yield length
    if last is None:
        return  # never verified: no verdict to show
    yield GaugeMetricFamily(
        "portal_audit_verify_ok",
        "1 when the last `manage.py verify_audit` found the audit log intact, 0 when it found "
        "tampering or could not use its key or checkpoint file.",
        value=1 if last.outcome == VerifyRun.Outcome.OK else 0,
    )
    yield GaugeMetricFamily(
        "portal_audit_verify_timestamp_seconds",
        "When the last `manage.py verify_audit` ran (Unix time).",
        value=last.at.timestamp(),
    )


def machinery():
    try:
        state = runtime_state.read(quick_connection(REDIS_TIMEOUT), with_step_timings=True)
    except redis.exceptions.RedisError as exc:
        log.warning("metrics: Redis unreachable (%s)", exc)
        yield GaugeMetricFamily("portal_redis_up", "1 when Redis answered this scrape.", 0)
        return
    yield GaugeMetricFamily("portal_redis_up", "1 when Redis answered this scrape.", 1)
    yield GaugeMetricFamily(
        "portal_workers_live", "rq workers alive (composer/liveness.py).", state.live_workers
    )
    yield GaugeMetricFamily(
        "portal_scheduler_up",
        "1 when rq's scheduler (a worker started with --with-scheduler) runs.",
        1 if state.scheduler_alive else 0,
    )
    if state.reconciled_at is not None:
        yield GaugeMetricFamily(
            "portal_reconciler_last_run_timestamp_seconds",
            "When the reconciler last finished a run (Unix time).",
            state.reconciled_at,
        )
    length = GaugeMetricFamily("portal_queue_jobs", "Jobs waiting in the queue.", labels=["queue"])
    age = GaugeMetricFamily(
        "portal_queue_oldest_job_age_seconds",
        "How long the job at the head of the queue has waited (0 when the queue is empty).",
        labels=["queue"],
    )
    now = time.time()
    for name, queue in state.queues.items():
        length.add_metric([name], queue.length)
        waited = now - queue.oldest_enqueued_at.timestamp() if queue.oldest_enqueued_at else 0
        age.add_metric([name], max(0.0, waited))
    yield from (length, age)
    steps = HistogramMetricFamily(
        "portal_desktop_step_duration_seconds",
        "How long each finished desktop step took, by operation kind and step.",
        labels=["kind", "step"],
    )
    for (kind, step), (buckets, total) in state.step_timings.items():
        steps.add_metric([kind, step], buckets, total)
    yield steps


registry = CollectorRegistry(auto_describe=False)
registry.register(PortalCollector())


def refusal(request) -> HttpResponse | None:
    """Why this request may not read the metrics, or None. Every check that is configured
    must pass; with none configured, nobody may."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOW
    if not token and not networks:
        return HttpResponse(
            "Metrics are off: set METRICS_TOKEN and/or METRICS_ALLOW.\n",
            status=403,
            content_type="text/plain",
        )
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            address = None
        if address is None or not any(address in network for network in networks):
            return HttpResponse(
                "Not from an allowed address.\n", status=403, content_type="text/plain"
            )
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # Bytes, so that a non-ASCII header cannot make compare_digest raise.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            response = HttpResponse(
                "A valid bearer token is required.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


@login_not_required
@require_safe
@never_cache
def metrics(request):
    refused = refusal(request)
    if refused is not None:
        log.info("metrics refused to %s: %s", request.META.get("REMOTE_ADDR"), refused.status_code)
        return refused
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
