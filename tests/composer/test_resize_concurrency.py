"""Two resizes of one pool at the same moment, in real threads on PostgreSQL (each its own
connection): the pool's row lock makes the second count what the first left, so desktops are
never placed beyond the size nor the same desktop chosen twice."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from composer import services
from composer.models import DesktopTask, Operation
from pools.models import Pool
from tests import factories

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL"
    ),
]


def at_once(calls) -> list:
    """Run each call in its own thread, released together; their answers, in order."""
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)
    failures: list = []

    def run(i):
        try:
            barrier.wait(timeout=30)
            answers[i] = calls[i]()
        except Exception as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return answers


def resize(admin, pool_pk: int, size: int):
    return lambda: services.resize_pool(admin, Pool.objects.get(pk=pool_pk), size)


def test_two_grows_at_once_place_desktops_once(users, lab, run_jobs):
    pool = factories.requested_pool(users["admin"], lab, "Race", "RAC-{n}", 2)
    run_jobs()

    answers = at_once([resize(users["admin"], pool.pk, 5), resize(users["admin"], pool.pk, 5)])

    # One placed three desktops; the other found the pool at 5 already.
    assert sorted(a is None for a in answers) == [False, True]
    assert pool.desktops.count() == 5
    assert len(set(pool.desktops.values_list("name", flat=True))) == 5
    pool.refresh_from_db()
    assert pool.size == 5
    run_jobs()
    assert Operation.objects.filter(pool=pool, status=Operation.Status.SUCCEEDED).count() == 2


def test_two_shrinks_at_once_never_pick_the_same_desktops(users, lab, run_jobs):
    pool = factories.requested_pool(users["admin"], lab, "Race", "RAC-{n}", 6)
    run_jobs()

    answers = at_once([resize(users["admin"], pool.pk, 2), resize(users["admin"], pool.pk, 2)])

    # One chose four desktops to delete; the other found only two left once it had the lock.
    assert sorted(a is None for a in answers) == [False, True]
    (delete,) = [a for a in answers if a is not None]
    chosen = list(delete.tasks.values_list("desktop_id", flat=True))
    assert len(chosen) == len(set(chosen)) == 4
    assert DesktopTask.objects.filter(operation__kind="delete").count() == 4
    run_jobs()
    pool.refresh_from_db()
    assert pool.desktops.count() == pool.size == 2
