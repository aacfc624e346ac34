"""A task whose desktop was deleted while it waited in the queue is skipped with that reason,
not failed as an internal error (issue 9, item 0)."""

import pytest

from composer import services
from composer.models import DesktopTask, Operation
from pools.models import Desktop
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_queued_task_of_a_deleted_desktop_is_skipped(users, make_pool, run_jobs):
    pool = make_pool("Gone", "GN-{n}", 2)
    run_jobs()
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
    operation = services.start_operation(users["admin"], pool, "refresh")
    Desktop.objects.filter(name="GN-1").delete()  # deleted by someone else meanwhile
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    gone = operation.tasks.get(desktop_name="GN-1")
    assert gone.status == DesktopTask.Status.SKIPPED
    assert gone.error == "the desktop was deleted before its turn came"
    assert operation.tasks.get(desktop_name="GN-2").status == DesktopTask.Status.SUCCEEDED
