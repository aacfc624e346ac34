"""Two identical requests with the same Idempotency-Key at the same moment, in real threads on
PostgreSQL (each its own connection): the work starts once and both get its answer."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from composer import services
from composer.models import Operation
from pools.models import Pool
from portal.models import ApiToken
from tests.api.conftest import Caller

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL"
    ),
]


def at_once(n: int, call) -> list:
    """Run call() in n threads released together; their answers, in thread order."""
    barrier = threading.Barrier(n)
    answers: list = [None] * n
    failures: list = []

    def run(i):
        try:
            barrier.wait(timeout=30)
            answers[i] = call()
        except Exception as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    return answers


@pytest.fixture
def secret(users):
    return ApiToken.issue(users["admin"], "pipeline")[1]


def test_two_identical_operation_requests_start_one_operation(users, lab, secret, run_jobs):
    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Race",
            naming_pattern="RAC-{n}",
            size=3,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    run_jobs()
    pool = Pool.objects.get(name="Race")
    url = f"/api/v1/pools/{pool.pk}/operations/"

    answers = at_once(
        4, lambda: Caller(Client(), secret).post(url, {"kind": "refresh"}, key="same-key")
    )

    assert [a.status_code for a in answers] == [201] * 4
    bodies = [a.json() for a in answers]
    assert all(body == bodies[0] for body in bodies)
    assert sum(a.has_header("Idempotent-Replayed") for a in answers) == 3
    assert Operation.objects.filter(kind="refresh").count() == 1
    assert Operation.objects.get(kind="refresh").pk == bodies[0]["id"]


def test_two_identical_pool_creations_create_one_pool(users, lab, secret):
    body = {
        "name": "Twins",
        "naming_pattern": "TWN-{n}",
        "size": 2,
        "image_version": lab.v1.pk,
        "datastores": [lab.ds["ds-a"].pk],
    }

    answers = at_once(3, lambda: Caller(Client(), secret).post("/api/v1/pools/", body, key="k"))

    assert [a.status_code for a in answers] == [201] * 3
    assert len({a.content for a in answers}) == 1  # byte for byte
    assert sum(a.has_header("Idempotent-Replayed") for a in answers) == 2
    assert Pool.objects.filter(name="Twins").count() == 1
