"""A hypervisor that does not answer is not a desktop failure, on the simulator too (issue 9,
item 8): the step waits and is tried again with back-off, and resumes once the hypervisor is
back; only an outage longer than the endpoint's window fails the desktop."""

import time

import pytest

from composer import dispatch, services
from composer.models import DesktopTask, Operation
from pools.models import Desktop, HypervisorEndpoint
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)

Task = DesktopTask.Status


@pytest.fixture
def pool(make_pool, run_jobs):
    pool = make_pool("Out", "OUT-{n}", 2)
    run_jobs()
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
    return pool


def retry_when_due(lab, run_jobs, seconds):
    """What rq's scheduler does when a parked desktop's time comes: dispatch, then run."""
    time.sleep(seconds)
    dispatch.dispatch(lab.endpoint.pk)
    run_jobs()


def test_desktops_wait_out_an_outage_and_resume(users, lab, pool, run_jobs):
    lab.sim.set_outage(3)
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs()
    tasks = list(operation.tasks.all())
    assert [t.status for t in tasks] == [Task.WAITING, Task.WAITING]
    assert all("not answering" in t.error for t in tasks)
    assert not Desktop.objects.filter(pool=pool, state=DesktopState.ERROR).exists()

    retry_when_due(lab, run_jobs, 3.5)  # back, and each desktop's retry is due
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    assert sorted(t for m, t in lab.sim.call_log() if m == "revert") == ["OUT-1", "OUT-2"]
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}


def test_an_outage_longer_than_the_window_fails_the_desktop_with_the_reason(
    users, lab, pool, run_jobs
):
    HypervisorEndpoint.objects.filter(pk=lab.endpoint.pk).update(outage_window_seconds=1)
    lab.sim.set_outage(60)
    operation = services.start_operation(users["admin"], pool, "refresh")
    run_jobs()
    assert set(operation.tasks.values_list("status", flat=True)) == {Task.WAITING}
    retry_when_due(lab, run_jobs, 2.2)
    lab.sim.set_outage(0)
    operation.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    for desktop in pool.desktops.all():
        assert desktop.state == DesktopState.ERROR
        assert "does not answer (no answer for" in desktop.reason
        assert desktop.reason.endswith("more than 1 s)")
