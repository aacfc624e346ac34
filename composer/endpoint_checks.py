"""Connection tests and inventory syncs that administrators ask for on the Hypervisors page.

Both talk to the hypervisor, which may take minutes (a slow or large vCenter), so they run as
RQ jobs: the request only records an EndpointCheck and enqueues it, and the page follows the
row live. Asking again while one of the same kind is under way returns that one.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from audit.log import Outcome, record
from composer import endpoint_drivers, inventory
from composer.drivers.base import DriverError
from composer.liveness import job_alive
from composer.models import EndpointCheck
from composer.queue import RUN_ENDPOINT_CHECK, enqueue_on_commit, queue
from composer.services.authorization import authorize
from pools.models import HypervisorEndpoint

log = logging.getLogger(__name__)

Kind = EndpointCheck.Kind
Status = EndpointCheck.Status
ACTIONS = {Kind.TEST: "test_connection", Kind.SYNC: "sync_inventory"}
PERMISSION = "pools.change_hypervisorendpoint"


def request_check(actor, endpoint: HypervisorEndpoint, kind: str, request=None) -> EndpointCheck:
    authorize(
        actor,
        PERMISSION,
        action=ACTIONS[kind],
        target=endpoint,
        request=request,
        message="Only administrators may test or sync a hypervisor.",
    )
    with transaction.atomic():
        # The endpoint's row is the lock: two clicks at once make one check.
        HypervisorEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        running = EndpointCheck.objects.filter(
            endpoint=endpoint, kind=kind, status__in=EndpointCheck.ACTIVE
        ).first()
        if running is not None:
            return running
        check = EndpointCheck.objects.create(endpoint=endpoint, kind=kind, requested_by=actor)
        record(
            actor=actor,
            action=ACTIONS[kind],
            outcome=Outcome.REQUESTED,
            target=endpoint,
            parameters={"driver": endpoint.driver, "check": check.pk},
            request=request,
        )
        enqueue_on_commit(RUN_ENDPOINT_CHECK, check.job_id, check.pk)
    return check


def run(check_id: int) -> str:
    """The job: claim the check, talk to the hypervisor outside any transaction, record the
    outcome on the check (and, for a sync, on the endpoint) and in the audit log."""
    with transaction.atomic():
        check = EndpointCheck.objects.select_for_update().get(pk=check_id)
        if check.status != Status.QUEUED:
            return f"check {check_id} is {check.status}"
        check.status, check.started_at = Status.RUNNING, timezone.now()
        check.save(update_fields=["status", "started_at"])
    endpoint = HypervisorEndpoint.objects.get(pk=check.endpoint_id)
    report: dict = {}
    try:
        if check.kind == Kind.TEST:
            text = endpoint_drivers.for_endpoint(endpoint).test_connection()
        else:
            # Also keeps the outcome (time or error, orphans) on the endpoint row.
            report = inventory.sync_endpoint(endpoint)
            text = (
                f"Inventory synced: {report['datastores']} datastore(s)"
                + (f" ({report['gone']} no longer in the hypervisor)" if report.get("gone") else "")
                + f", {report['missing']} desktop(s) with a missing VM, "
                f"{len(report['orphans'])} orphan VM(s)."
            )
        outcome = Status.SUCCEEDED
    except DriverError as exc:  # an unknown driver or a bad setting is one too
        text, outcome = str(exc), Status.FAILED
    finish(check, outcome, text, report)
    return f"{check.get_kind_display()} of {endpoint.name}: {outcome}"


def finish(check: EndpointCheck, outcome: str, text: str, report: dict | None = None) -> None:
    with transaction.atomic():
        updated = EndpointCheck.objects.filter(pk=check.pk, status__in=EndpointCheck.ACTIVE).update(
            status=outcome, message=text, finished_at=timezone.now()
        )
        if not updated:
            return  # ended already (the reconciler gave it up)
        record(
            actor=check.requested_by,
            action=ACTIONS[check.kind],
            outcome=Outcome.SUCCEEDED if outcome == Status.SUCCEEDED else Outcome.FAILED,
            target=check.endpoint,
            # The text goes in `message` too, as that is the column the audit page shows.
            parameters={"driver": check.endpoint.driver, "message": text, **(report or {})},
            message=text,
        )


def latest(endpoint_ids) -> dict[tuple[int, str], EndpointCheck]:
    """The newest check of each kind per endpoint, for the Hypervisors page (two queries)."""
    newest = (
        EndpointCheck.objects.filter(endpoint_id__in=list(endpoint_ids))
        .values("endpoint_id", "kind")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    return {(c.endpoint_id, c.kind): c for c in EndpointCheck.objects.filter(pk__in=list(newest))}


def give_up_lost(older_than) -> int:
    """Checks queued or running since before `older_than` whose job is gone end as failed
    (the reconciler), so the page does not show them under way for ever."""
    conn = queue().connection
    lost = 0
    for check in EndpointCheck.objects.filter(
        status__in=EndpointCheck.ACTIVE, requested_at__lt=older_than
    ).select_related("endpoint", "requested_by"):
        if not job_alive(check.job_id, conn):
            finish(check, Status.FAILED, "no worker ran it (the worker stopped); ask again")
            lost += 1
    return lost
