"""One live operation per desktop, whatever arrives at the same moment (issue 9, item 0).

Real concurrent requests through the real views, from threads each with its own database
connection, released together by a barrier: a double click on a form, a double click on the
helpdesk's confirmation, and bursts of conflicting requests from two administrators. No
worker runs, so every operation stays queued and the check sees every live claim at once.
"""

import random
import threading
import time

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from composer.models import DesktopTask, Operation
from pools.states import DesktopState
from tests.worker_processes import finish, start_worker, stop

pytestmark = pytest.mark.django_db(transaction=True)

LIVE_TASK = [
    DesktopTask.Status.PENDING,
    DesktopTask.Status.WAITING,
    *DesktopTask.IN_FLIGHT,
]
LIVE_OPERATION = [
    Operation.Status.QUEUED,
    Operation.Status.RUNNING,
    Operation.Status.PAUSED,
    Operation.Status.CANCELLING,
]


def at_once(count, work):
    """Run work(i) in `count` threads released at the same moment; what each returned."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # the test looks at what was raised
            results[i] = error
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.fixture
def pool(make_pool):
    pool = make_pool("Race", "RC-{n:fixed=2}", 12)
    # Provisioning is over for this test: its operation holds no desktop any more.
    DesktopTask.objects.update(status=DesktopTask.Status.SUCCEEDED)
    Operation.objects.update(status=Operation.Status.SUCCEEDED)
    pool.desktops.update(state=DesktopState.AVAILABLE)
    return pool


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def operate(client, pool, kind, desktops, submission, **fields):
    data = {
        "desktop": [d.pk for d in desktops],
        "selection": "1",
        "submission": submission,
        "when": "now",
        "start_at": "",
        "logoff_policy": "wait",
        "warning_message": "",
        "grace_seconds": 300,
        **fields,
    }
    return client.post(reverse("pools:operate", args=[pool.pk, kind]), data)


def live_claims() -> dict[int, int]:
    """Desktop id -> how many live operations hold it."""
    claims: dict[int, int] = {}
    for desktop_id in DesktopTask.objects.filter(
        status__in=LIVE_TASK, operation__status__in=LIVE_OPERATION
    ).values_list("desktop_id", flat=True):
        claims[desktop_id] = claims.get(desktop_id, 0) + 1
    return claims


def test_a_double_submit_of_the_form_starts_one_operation(users, pool):
    desktop = pool.desktops.order_by("name").first()
    clients = [client_for(users["admin"]) for _ in range(2)]
    responses = at_once(
        2, lambda i: operate(clients[i], pool, "refresh", [desktop], "token-double-click")
    )
    assert [getattr(r, "status_code", r) for r in responses] == [302, 302]
    operation = Operation.objects.get(submission="token-double-click")
    assert {r.url for r in responses} == {operation.get_absolute_url()}
    assert Operation.objects.filter(kind="refresh").count() == 1
    assert live_claims() == {desktop.pk: 1}


def test_a_double_click_on_the_helpdesk_confirmation_starts_one_operation(users, pool):
    desktop = pool.desktops.order_by("name").first()
    clients = [client_for(users["helpdesk"]) for _ in range(2)]
    url = reverse("helpdesk_confirm", args=[desktop.pk, "refresh"])
    responses = at_once(
        2, lambda i: clients[i].post(url, {"q": desktop.name, "submission": "token-helpdesk"})
    )
    assert [getattr(r, "status_code", r) for r in responses] == [302, 302]
    assert Operation.objects.filter(kind="refresh").count() == 1
    assert live_claims() == {desktop.pk: 1}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bursts_of_conflicting_requests_never_give_a_desktop_two_live_operations(users, pool, seed):
    rng = random.Random(seed)
    desktops = list(pool.desktops.order_by("name"))
    admins = [users["admin"], users["admin2"]] if "admin2" in users else [users["admin"]] * 2
    clients = [client_for(admins[i % 2]) for i in range(20)]
    requests = []
    for i in range(20):
        kind, fields = rng.choice(
            [("refresh", {}), ("power", {"action": "restart"}), ("logoff", {})]
        )
        chosen = rng.sample(desktops, rng.randint(1, 6))
        requests.append((kind, chosen, fields, f"burst-{seed}-{i}"))
    responses = at_once(
        20,
        lambda i: operate(
            clients[i], pool, requests[i][0], requests[i][1], requests[i][3], **requests[i][2]
        ),
    )
    assert all(getattr(r, "status_code", None) == 302 for r in responses), responses
    claims = live_claims()
    assert claims and max(claims.values()) == 1, claims
    # Every request was answered with an operation; the desktops another held are skipped.
    assert Operation.objects.filter(submission__startswith=f"burst-{seed}-").count() == 20
    touched = {d.pk for _, chosen, _, _ in requests for d in chosen}
    assert set(claims) == touched  # each desktop asked for went to exactly one of them


def test_with_workers_running_no_desktop_is_worked_on_by_two_operations(
    users, make_pool, lab, run_jobs
):
    """Waves of conflicting requests while two real workers run them: seen from the
    hypervisor's side, no call on a VM ever overlapped another call on it."""
    pool = make_pool("Busy", "BZ-{n:fixed=2}", 8)
    run_jobs()  # provisioned
    desktops = list(pool.desktops.order_by("name"))
    workers = [start_worker(step_seconds=0.05) for _ in range(2)]
    try:
        for wave in range(3):
            rng = random.Random(wave)
            clients = [client_for(users["admin"]) for _ in range(8)]
            requests = [
                (
                    *rng.choice(
                        [("refresh", {}), ("power", {"action": "restart"}), ("logoff", {})]
                    ),
                    rng.sample(desktops, rng.randint(1, 4)),
                )
                for _ in range(8)
            ]
            responses = at_once(
                8,
                lambda i, clients=clients, requests=requests, wave=wave: operate(
                    clients[i],
                    pool,
                    requests[i][0],
                    requests[i][2],
                    f"wave-{wave}-{i}",
                    **requests[i][1],
                ),
            )
            assert all(getattr(r, "status_code", None) == 302 for r in responses), responses
            time.sleep(rng.uniform(0, 0.5))  # the next wave lands while this one runs
        for operation in Operation.objects.filter(submission__startswith="wave-"):
            finish(operation)
    finally:
        for worker in workers:
            stop(worker)
    assert lab.sim.overlapping_calls() == []
    assert Operation.objects.filter(submission__startswith="wave-").count() == 24
    assert not Operation.objects.filter(status__in=LIVE_OPERATION).exists()
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
