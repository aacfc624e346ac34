"""/metrics (portal/metrics.py): refused unless a token or allow-list lets the scraper in,
parsed with prometheus-client's own parser, its figures checked against the database, the
same number of queries whatever the estate, and a real operation seen moving."""

from collections import defaultdict

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from audit.log import Outcome, record
from audit.models import AuditEvent
from composer import services
from composer.models import DesktopTask, Operation
from pools.models import Datastore, Desktop
from pools.states import DesktopState
from tests import factories
from tests.portal.test_settings import start_django
from tests.worker_processes import errors, start_worker, stop, wait_for

TOKEN = "metrics-token-" + "x" * 30
MIB = 1024 * 1024


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []


def scrape(client=None, **headers):
    response = (client or Client()).get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def parse(text):
    """{metric family name: {(sample name, sorted labels): value}}."""
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return families


def by_label(family, sample, label):
    """The values of one sample name keyed by one label's value."""
    return {
        dict(labels)[label]: value for (name, labels), value in family.items() if name == sample
    }


# -- who may scrape ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_refused_when_neither_token_nor_allow_list_is_configured(settings, redis_conn):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW = "", []
    response = Client().get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content
    assert b"portal_" not in response.content


@pytest.mark.django_db
def test_the_token_lets_a_scraper_in_and_nothing_else_does(metrics_on, redis_conn):
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer t\u00f6ken"},  # not ASCII: refused, not a 500
    ):
        response = Client().get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"portal_" not in response.content
    assert "portal_desktops" in scrape()
    # No sign-in involved, and no session made.
    assert (
        "sessionid"
        not in Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).cookies
    )


@pytest.mark.django_db
def test_django_rqs_own_metrics_page_is_not_there(admin_client, redis_conn):
    """django-rq adds admin/rq/metrics/ when prometheus-client is installed; its `name[]`
    filter broke every later request (a 500). /metrics is the one place."""
    for _ in range(2):
        for path in (
            "/admin/rq/metrics/?name[]=rq_workers",
            "/admin/rq/metrics/",
            "/admin/rq/metrics",
            "/admin/django_rq/dashboard/metrics/?name[]=rq_workers",
            "/admin/django_rq/dashboard/metrics/",
        ):
            assert admin_client.get(path).status_code == 404, path


@pytest.mark.django_db
def test_the_allow_list_lets_in_only_its_addresses(settings, redis_conn):
    import ipaddress

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert Client().get("/metrics").status_code == 403  # the test client is 127.0.0.1
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    # Both configured: both must hold.
    settings.METRICS_TOKEN = TOKEN
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 401
    assert scrape(Client(REMOTE_ADDR="10.1.2.3"))
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METRICS_TOKEN", "too-short"),
        ("METRICS_TOKEN", "has spaces " + "x" * 40),
        ("METRICS_ALLOW", "10.0.0.0/8, not-a-network"),
        ("METRICS_ALLOW", "10.0.0.1/8"),  # host bits set: a typo
    ],
)
def test_bad_settings_stop_the_portal_naming_the_variable(tmp_path, variable, value):
    result = start_django(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert f"{variable}:" in result.stderr


# -- what it says --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_figures_match_the_database(metrics_on, users, lab, run_jobs):
    admin = users["admin"]
    pool = factories.requested_pool(admin, lab, "Sales", "SAL-{n}", 3)
    run_jobs()  # provisioned in this process, its steps timed
    factories.requested_pool(admin, lab, "Empty", "EMP-{n}", 1)  # queued, not run
    failed = factories.operation(pool, admin, kind="refresh", status="failed")
    factories.task(failed, pool.desktops.first(), status=DesktopTask.Status.FAILED)
    Desktop.objects.filter(pk=pool.desktops.last().pk).update(state=DesktopState.ERROR)

    metrics = scrape()

    desktops = metrics["portal_desktops"]
    for (_, labels), value in desktops.items():
        labels = dict(labels)
        expected = Desktop.objects.filter(pool__name=labels["pool"], state=labels["state"])
        assert value == expected.count(), labels
    assert desktops[("portal_desktops", (("pool", "Sales"), ("state", "available")))] == 2
    assert desktops[("portal_desktops", (("pool", "Sales"), ("state", "error")))] == 1

    operations = metrics["portal_operations"]
    for (_, labels), value in operations.items():
        labels = dict(labels)
        assert value == Operation.objects.filter(**labels).count(), labels
    assert sum(operations.values()) == Operation.objects.count()

    failures = by_label(metrics["portal_desktop_failures"], "portal_desktop_failures_total", "kind")
    assert failures["refresh"] == 1
    assert failures["provision"] == 0

    for ds in Datastore.objects.filter(gone=False):
        labels = (("datastore", ds.name), ("endpoint", ds.endpoint.name))
        used = metrics["portal_datastore_used_bytes"][("portal_datastore_used_bytes", labels)]
        capacity = metrics["portal_datastore_capacity_bytes"]
        assert used == ds.used_mb * MIB
        assert capacity[("portal_datastore_capacity_bytes", labels)] == ds.capacity_mb * MIB
    committed = by_label(
        metrics["portal_datastore_committed_bytes"], "portal_datastore_committed_bytes", "datastore"
    )
    for ds in Datastore.objects.all():  # each clone at its parent disk's full size
        clones = Desktop.objects.filter(datastore=ds).select_related("image_version")
        assert committed[ds.name] == sum(d.image_version.disk_mb for d in clones) * MIB
    assert sum(committed.values()) == 4 * lab.v1.disk_mb * MIB  # Sales' 3 and Empty's 1

    # Provisioning's steps ran here: one count per desktop and step, in the histogram.
    steps = metrics["portal_desktop_step_duration_seconds"]
    clone_count = steps[
        ("portal_desktop_step_duration_seconds_count", (("kind", "provision"), ("step", "clone")))
    ]
    assert clone_count == 3
    inf = steps[
        (
            "portal_desktop_step_duration_seconds_bucket",
            (("kind", "provision"), ("le", "+Inf"), ("step", "clone")),
        )
    ]
    assert inf == clone_count

    assert metrics["portal_redis_up"][("portal_redis_up", ())] == 1
    queues = by_label(metrics["portal_queue_jobs"], "portal_queue_jobs", "queue")
    assert queues == {"default": 1, "urgent": 0}  # the Empty pool's provisioning
    ages = by_label(
        metrics["portal_queue_oldest_job_age_seconds"],
        "portal_queue_oldest_job_age_seconds",
        "queue",
    )
    assert 0 <= ages["default"] < 600 and ages["urgent"] == 0
    assert metrics["portal_workers_live"][("portal_workers_live", ())] == 0


@pytest.mark.django_db
def test_audit_chain_length_and_the_last_verify_result(metrics_on, users, redis_conn):
    metrics = scrape()
    assert metrics["portal_audit_chain_events"][("portal_audit_chain_events", ())] == (
        AuditEvent.objects.count()
    )
    assert "portal_audit_verify_ok" not in metrics  # never verified: no verdict

    call_command("verify_audit", checkpoints=None)
    metrics = scrape()
    assert metrics["portal_audit_verify_ok"][("portal_audit_verify_ok", ())] == 1
    assert "portal_audit_verify_timestamp_seconds" in metrics

    # Events after the verification still count.
    for n in range(3):
        record(actor=users["admin"], action=f"test-{n}", outcome=Outcome.SUCCEEDED)
    metrics = scrape()
    assert metrics["portal_audit_chain_events"][("portal_audit_chain_events", ())] == (
        AuditEvent.objects.count()
    )

    # A broken checkpoint file is an unusable run: the verdict drops to 0.
    with pytest.raises(CommandError):
        call_command("verify_audit", checkpoints="/nonexistent/dir/file")
    assert scrape()["portal_audit_verify_ok"][("portal_audit_verify_ok", ())] == 0


@pytest.mark.django_db
def test_a_scrape_costs_the_same_queries_with_10_and_300_desktops(metrics_on, users, redis_conn):
    endpoint = factories.endpoint()
    version = factories.version(factories.image(endpoint))
    datastores = [factories.datastore(endpoint, f"ds-{n}") for n in range(3)]

    def queries_with(desktops: int) -> int:
        pool = factories.pool(f"P{desktops}", version, datastores, size=desktops)
        for n, state in enumerate((DesktopState.AVAILABLE, DesktopState.MAINTENANCE)):
            names = [f"P{desktops}-{state[:2]}{i}" for i in range(desktops // 2)]
            factories.desktops(pool, names, datastores[n], state=state)
        operation = factories.operation(pool, users["admin"], status="failed")
        for desktop in pool.desktops.all()[: desktops // 5]:
            factories.task(operation, desktop, status=DesktopTask.Status.FAILED)
        with CaptureQueriesContext(connection) as queries:
            scrape()
        return len(queries)

    small = queries_with(10)
    large = queries_with(300)
    assert small == large, (small, large)
    assert small == 7  # desktops, operations, failures, datastores, committed, audit x2


# -- watching an operation -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_scraped_during_a_refresh_the_desktops_move_and_come_back(metrics_on, users, lab, run_jobs):
    admin = users["admin"]
    pool = factories.requested_pool(admin, lab, "Watched", "WAT-{n}", 3)
    run_jobs()
    assert pool.desktops.filter(state=DesktopState.AVAILABLE).count() == 3
    before = scrape()

    def refresh_steps(metrics):
        return sum(
            value
            for (name, labels), value in metrics["portal_desktop_step_duration_seconds"].items()
            if name.endswith("_count") and ("kind", "refresh") in labels
        )

    def states(metrics):
        return {
            dict(labels)["state"]: value
            for (_, labels), value in metrics["portal_desktops"].items()
            if ("pool", "Watched") in labels
        }

    assert refresh_steps(before) == 0
    operation = services.start_operation(admin, pool, "refresh")
    # Each simulated step takes a moment, so the scrapes catch desktops under way.
    worker = start_worker(step_seconds=0.3)
    seen = defaultdict(int)
    try:

        def finished():
            metrics = scrape()
            for state, value in states(metrics).items():
                seen[state] = max(seen[state], value)
            operation.refresh_from_db()
            return not operation.is_active

        wait_for(finished, timeout=180, interval=0.1)
    finally:
        stop(worker)

    assert operation.status == Operation.Status.SUCCEEDED, errors(operation)
    assert seen[DesktopState.MAINTENANCE] >= 1, dict(seen)
    after = scrape()
    assert states(after)[DesktopState.AVAILABLE] == 3
    assert states(after)[DesktopState.MAINTENANCE] == 0
    operations = after["portal_operations"]
    succeeded = (("kind", "refresh"), ("status", "succeeded"))
    assert operations[("portal_operations", succeeded)] == 1
    # Every step of every desktop, timed by the worker process, in the shared histogram (its
    # job hands its last notes over as it ends, a moment after the operation's rows do).
    steps = len(operation.spec.steps_for(operation))
    wait_for(lambda: refresh_steps(scrape()) >= 3 * steps, timeout=60, interval=0.1)
    assert refresh_steps(scrape()) == 3 * steps
