"""Which desktops an operation has a claim on (composer.models.DesktopTaskQuerySet): held by
any active operation, scheduled ones included; busy only in a started one."""

import pytest

from composer.models import DesktopTask
from composer.reconciler import end_orphaned_desktops
from pools.states import DesktopState as S
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    endpoint = factories.endpoint()
    ds = factories.datastore(endpoint, "ds-a")
    pool = factories.pool("Claims", factories.version(factories.image(endpoint)), [ds])
    pool.ds = ds
    return pool


def claimed(tasks) -> set[str]:
    return set(tasks.values_list("desktop_name", flat=True))


def test_started_operations_hold_and_make_busy_their_unfinished_desktops(users, pool):
    names = ["Q-1", "R-1", "P-1", "C-1", "W-1", "D-1", "DONE", "HALT", "FAIL", "SKIP"]
    d = {x.name: x for x in factories.desktops(pool, names, pool.ds)}
    admin = users["admin"]
    for status, name in (("queued", "Q-1"), ("paused", "P-1"), ("cancelling", "C-1")):
        factories.task(factories.operation(pool, admin, status=status), d[name])
    running = factories.operation(pool, admin)
    for name, status in (("R-1", "running"), ("W-1", "waiting"), ("D-1", "dispatched")):
        factories.task(running, d[name], status)
    for name, status in (("DONE", "succeeded"), ("HALT", "halted"), ("FAIL", "failed")):
        factories.task(running, d[name], status)
    factories.task(running, d["SKIP"], "skipped")
    unfinished = {"Q-1", "R-1", "P-1", "C-1", "W-1", "D-1"}
    assert claimed(DesktopTask.objects.busy()) == unfinished
    assert claimed(DesktopTask.objects.held()) == unfinished


def test_a_scheduled_operation_holds_its_desktops_but_leaves_them_free_to_start_now(users, pool):
    # Starting now replaces the schedule (services._activate), so it must not skip them.
    desktop = factories.desktop(pool, "S-1", pool.ds)
    factories.task(factories.operation(pool, users["admin"], status="scheduled"), desktop)
    assert claimed(DesktopTask.objects.held()) == {"S-1"}
    assert claimed(DesktopTask.objects.busy()) == set()


def test_finished_and_draft_operations_claim_nothing(users, pool):
    desktop = factories.desktop(pool, "F-1", pool.ds)
    for status in ("draft", "succeeded", "failed", "cancelled", "interrupted", "refused"):
        factories.task(factories.operation(pool, users["admin"], status=status), desktop)
    assert not DesktopTask.objects.held().exists()
    assert not DesktopTask.objects.busy().exists()


def test_a_task_whose_desktop_is_gone_does_not_hide_orphaned_desktops(users, pool):
    # SQL's NOT IN over a NULL matches nothing: a live task left without its desktop (deleted
    # meanwhile) made the reconciler leave every orphaned busy desktop as it was.
    gone = factories.desktop(pool, "GONE", pool.ds)
    factories.task(factories.operation(pool, users["admin"]), gone)
    gone.delete()
    orphan = factories.desktop(pool, "ORPHAN", pool.ds, state=S.MAINTENANCE)
    assert end_orphaned_desktops() == 1
    orphan.refresh_from_db()
    assert orphan.state == S.ERROR
