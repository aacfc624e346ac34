"""The Hypervisors page: each endpoint's connection settings, its last inventory sync and its
orphan VMs, with buttons to test the connection and to sync the inventory now.

Endpoints are created and edited in the Django admin (pools/admin.py), not here.
"""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from composer import drivers, inventory
from composer.drivers.base import DriverError
from composer.models import HypervisorTask
from pools.models import HypervisorEndpoint
from portal.audit import Outcome, record
from portal.permissions import require


@require("pools.view_hypervisorendpoint", action="view_hypervisors")
def endpoint_list(request):
    endpoints = list(
        HypervisorEndpoint.objects.annotate(datastore_count=Count("datastores")).order_by("name")
    )
    # Counted apart rather than as a second annotation: two joins would multiply the counts.
    tasks = dict(
        HypervisorTask.objects.values_list("endpoint_id").annotate(n=Count("id")).order_by()
    )
    for endpoint in endpoints:
        endpoint.task_count = tasks.get(endpoint.pk, 0)
    return render(request, "pools/endpoint_list.html", {"endpoints": endpoints})


# The two actions talk to the hypervisor in the request itself: an administrator pressing the
# button wants the answer now, and both are quick or fail quickly. Neither is in a transaction,
# so a slow hypervisor holds no database lock; the audit event is written after the call.


@require_POST
@require("pools.change_hypervisorendpoint", action="test_connection")
def endpoint_test(request, pk: int):
    endpoint = get_object_or_404(HypervisorEndpoint, pk=pk)
    try:
        summary = drivers.for_endpoint(endpoint).test_connection()
    except (DriverError, ValueError) as exc:  # ValueError: a driver this portal does not know
        # The driver's message is written for administrators: shown as it is.
        _done(request, endpoint, "test_connection", Outcome.FAILED, str(exc))
        messages.error(request, f"{endpoint.name}: connection test failed: {exc}")
    else:
        _done(request, endpoint, "test_connection", Outcome.SUCCEEDED, summary)
        messages.success(request, f"{endpoint.name}: {summary}")
    return redirect("pools:hypervisors")


@require_POST
@require("pools.change_hypervisorendpoint", action="sync_inventory")
def endpoint_sync(request, pk: int):
    endpoint = get_object_or_404(HypervisorEndpoint, pk=pk)
    try:
        # Also keeps the outcome (time or error, orphans) on the endpoint row for the page.
        report = inventory.sync_endpoint(endpoint)
    except (DriverError, ValueError) as exc:
        _done(request, endpoint, "sync_inventory", Outcome.FAILED, str(exc))
        messages.error(request, f"{endpoint.name}: inventory not synced: {exc}")
    else:
        orphans = report["orphans"]
        summary = (
            f"inventory synced: {report['datastores']} datastore(s), "
            f"{report['missing']} desktop(s) with a missing VM, {len(orphans)} orphan VM(s)."
        )
        _done(request, endpoint, "sync_inventory", Outcome.SUCCEEDED, summary, report)
        messages.success(request, f"{endpoint.name}: {summary}")
    return redirect("pools:hypervisors")


def _done(request, endpoint, action: str, outcome: str, text: str, report: dict | None = None):
    # The text goes in `message` too, as that is the column the audit page shows.
    record(
        actor=request.user,
        action=action,
        outcome=outcome,
        target=endpoint,
        parameters={"driver": endpoint.driver, "message": text, **(report or {})},
        message=text,
        request=request,
    )
