"""The Hypervisors page: each endpoint's connection settings, its last inventory sync and its
orphan VMs, with buttons to test the connection and to sync the inventory now (as jobs whose
progress the page shows live).

Endpoints are created and edited in the Django admin (portal/admin.py), not here. What the
page says of each endpoint's driver and settings comes from its driver's settings class
(composer/endpoint_drivers.describe), so a new driver needs nothing here.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from composer import agent_sessions, endpoint_checks, endpoint_drivers
from composer.models import EndpointCheck, HypervisorTask
from pools.models import HypervisorEndpoint
from portal.permissions import require


@require("pools.view_hypervisorendpoint", action="view_hypervisors")
def endpoint_list(request):
    endpoints = list(
        HypervisorEndpoint.objects.annotate(datastore_count=Count("datastores")).order_by("name")
    )
    # Counted apart rather than as a second annotation: two joins would multiply the counts.
    tasks = dict(
        HypervisorTask.objects.values_list("endpoint_id").annotate(n=Count("*")).order_by()
    )
    checks = endpoint_checks.latest(e.pk for e in endpoints)
    for endpoint in endpoints:
        endpoint.task_count = tasks.get(endpoint.pk, 0)
        endpoint.about = endpoint_drivers.describe(endpoint)
        endpoint.recent_checks = [
            checks[(endpoint.pk, kind)]
            for kind in EndpointCheck.Kind.values
            if (endpoint.pk, kind) in checks
        ]
    context = {
        "endpoints": endpoints,
        # Poll only while a test or sync is under way; the last render stops by itself.
        "active": any(c.is_active for e in endpoints for c in e.recent_checks),
        "poll_seconds": settings.POLL_SECONDS,
    }
    if request.htmx:
        return render(request, "pools/endpoint_list.html#live", context)
    return render(request, "pools/endpoint_list.html", context)


# The two actions talk to the hypervisor, which may take minutes: they run as jobs
# (composer/endpoint_checks.py) and the page follows them live.


@require_POST
@require("pools.change_hypervisorendpoint", action="test_connection")
def endpoint_test(request, pk: int):
    return _check(request, pk, EndpointCheck.Kind.TEST)


@require_POST
@require("pools.change_hypervisorendpoint", action="sync_inventory")
def endpoint_sync(request, pk: int):
    return _check(request, pk, EndpointCheck.Kind.SYNC)


def _check(request, pk: int, kind: str):
    endpoint = get_object_or_404(HypervisorEndpoint, pk=pk)
    check = endpoint_checks.request_check(request.user, endpoint, kind, request=request)
    messages.info(
        request, f"{endpoint.name}: {check.get_kind_display().lower()} under way; see below."
    )
    return redirect(f"{reverse('pools:hypervisors')}#endpoint-{endpoint.pk}")


# The agent token desktops report sessions with (composer/agent_sessions.py): made, or made
# again (which locks the old one out), here; shown on this answer only, never stored.


@require_POST
@require("pools.change_hypervisorendpoint", action=agent_sessions.MAKE_TOKEN)
def endpoint_agent_token(request, pk: int):
    endpoint = get_object_or_404(HypervisorEndpoint, pk=pk)
    replaced = bool(endpoint.agent_token_prefix)
    secret = agent_sessions.make_token(request.user, endpoint, request=request)
    response = render(
        request,
        "pools/endpoint_agent_token.html",
        {
            "endpoint": endpoint,
            "secret": secret,
            "replaced": replaced,
            "portal_url": request.build_absolute_uri("/").rstrip("/"),
            "timeout": settings.AGENT_SESSION_TIMEOUT_SECONDS,
        },
    )
    response["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return response
