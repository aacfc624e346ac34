"""Helpdesk-sized work goes first (issue 10, item 2): one desktop refreshed, restarted or
logged off now runs ahead of bulk operations on the same endpoint, through the urgent queue
that every worker serves first and the next free slot; and a waiting desktop says why."""

import pytest
from rq import Worker

from composer import dispatch, services
from composer.models import DesktopTask, Operation
from composer.queue import DEFAULT, URGENT, queue
from composer.services import Options
from composer.worker import PortalWorker
from pools.models import Desktop, HypervisorEndpoint, Pool

pytestmark = pytest.mark.django_db(transaction=True)

Status = Operation.Status
TaskStatus = DesktopTask.Status


@pytest.fixture
def pools(users, lab, run_jobs):
    """Two provisioned pools on one endpoint: Bulk (8 desktops) and Help (2)."""
    for name, size in (("Bulk", 8), ("Help", 2)):
        services.create_pool(
            users["admin"],
            services.PoolSpec(
                name=name,
                naming_pattern=f"{name.upper()}-{{n:fixed=2}}",
                size=size,
                datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
                image_version=lab.v1,
                overcommit=4,
            ),
        )
    run_jobs()
    assert not Operation.objects.exclude(status=Status.SUCCEEDED).exists()
    return Pool.objects.get(name="Bulk"), Pool.objects.get(name="Help")


def test_which_operations_are_urgent(users, pools):
    bulk, help_pool = pools
    one = Desktop.objects.get(name="HELP-01")
    admin = users["admin"]
    urgent = services.start_operation(admin, help_pool, "refresh", [one])
    assert urgent.urgent and urgent.queue_name == URGENT
    assert queue(URGENT).job_ids == [urgent.job_id] and queue(DEFAULT).job_ids == []
    whole = services.start_operation(admin, bulk, "refresh")
    two = services.start_operation(
        admin,
        help_pool,
        "power",
        [Desktop.objects.get(name="HELP-02")],
        extra={"action": "shutdown"},
    )
    assert not whole.urgent and not two.urgent  # a pool; a shutdown is not helpdesk's
    later = services.start_operation(
        admin,
        bulk,
        "logoff",
        [Desktop.objects.get(name="BULK-01")],
        Options(start_at=urgent.requested_at.replace(year=2099)),
    )
    assert not later.urgent  # scheduled: it waits for its time anyway
    assert set(queue(DEFAULT).job_ids) == {whole.job_id, two.job_id}


def test_a_helpdesk_refresh_takes_the_next_free_slot_ahead_of_a_bulk_refresh(
    users, lab, pools, run_jobs
):
    bulk, help_pool = pools
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(max_maintenance=2)
    big = services.start_operation(users["admin"], bulk, "refresh")
    run_jobs(max_jobs=1)  # its operation job: 2 of 8 desktops handed out, 6 pending
    assert big.tasks.filter(status=TaskStatus.DISPATCHED).count() == 2

    desktop = Desktop.objects.get(name="HELP-01")
    urgent = services.start_operation(
        users["helpdesk"],
        help_pool,
        "refresh",
        [desktop],
        Options(logoff_policy=Operation.LogoffPolicy.FORCE, grace_seconds=60),
    )
    # Its job is served before the two queued bulk desktops: no slot is free yet, so it says
    # why it waits.
    run_jobs(max_jobs=1)
    task = urgent.tasks.select_related("operation__pool__endpoint").get()
    assert task.status == TaskStatus.PENDING
    assert dispatch.waiting_reasons([task]) == {
        task.pk: "waiting for a free slot: 2 of 2 in use on sim-test"
    }
    # One bulk desktop ends; the slot it frees goes to the helpdesk desktop, not to the
    # bulk refresh's next one (started earlier), and its job runs next.
    run_jobs(max_jobs=1)
    task.refresh_from_db()
    assert task.status == TaskStatus.DISPATCHED
    assert big.tasks.filter(status=TaskStatus.PENDING).count() == 6
    run_jobs(max_jobs=1)
    urgent.refresh_from_db()
    assert urgent.status == Status.SUCCEEDED
    assert big.tasks.filter(status=TaskStatus.SUCCEEDED).count() == 1

    run_jobs()
    big.refresh_from_db()
    assert big.status == Status.SUCCEEDED


def test_waiting_desktops_say_why(users, lab, pools, run_jobs):
    bulk, _ = pools
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(max_maintenance=8)
    Pool.objects.filter(pk=bulk.pk).update(max_concurrent_maintenance=3)
    operation = services.start_operation(users["admin"], bulk, "refresh")

    def reasons():
        tasks = list(operation.tasks.select_related("operation__pool__endpoint").order_by("pk"))
        said = dispatch.waiting_reasons(tasks)
        return [said.get(t.pk, t.status) for t in tasks]

    assert set(reasons()) == {"waiting for the operation to start"}
    run_jobs(max_jobs=1)
    assert reasons() == 3 * ["waiting for a worker"] + 5 * [
        "waiting for a free slot: 3 of 3 in use in pool Bulk"
    ]
    services.pause(users["admin"], operation)
    assert set(reasons()) == {"waiting (paused)"}
    services.resume(users["admin"], operation)
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    assert set(reasons()) == {TaskStatus.SUCCEEDED}


def test_every_worker_serves_the_urgent_queue_first(redis_conn):
    for given in (["default"], ["default", "urgent"], [queue(DEFAULT)]):
        worker = PortalWorker(given, connection=redis_conn)
        assert worker.queue_names() == [URGENT, DEFAULT], given
    assert Worker(["default"], connection=redis_conn).queue_names() == [DEFAULT]


def test_with_a_provision_running_a_helpdesk_refresh_does_not_wait_for_it(users, lab, pools):
    """Real worker, carrying on with the provision's desktops as in production: the refresh
    of one desktop ends while most of a 24-desktop provision is still to do (before, its job
    queued behind the provision's and waited for the provision, 77 s in the issue)."""
    from tests.worker_processes import finish, start_worker, stop, wait_for

    _, help_pool = pools
    worker = start_worker(step_seconds=0.05)
    try:
        provision = services.create_pool(
            users["admin"],
            services.PoolSpec(
                name="Big",
                naming_pattern="BIG-{n:fixed=2}",
                size=24,
                datastores=[lab.ds["ds-a"], lab.ds["ds-b"]],
                image_version=lab.v1,
                overcommit=4,
            ),
        )
        wait_for(lambda: provision.tasks.filter(status=TaskStatus.SUCCEEDED).exists())
        refresh = services.start_operation(
            users["helpdesk"], help_pool, "refresh", [Desktop.objects.get(name="HELP-01")]
        )
        wait_for(lambda: Operation.objects.get(pk=refresh.pk).status in Operation.FINISHED)
        refresh.refresh_from_db()
        assert refresh.status == Status.SUCCEEDED
        not_done = provision.tasks.exclude(status__in=DesktopTask.FINISHED).count()
        assert not_done >= 12, f"the refresh ended with only {not_done} desktops to provision"
        finish(provision)
        provision.refresh_from_db()
        assert provision.status == Status.SUCCEEDED
    finally:
        stop(worker)
