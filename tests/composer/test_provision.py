"""Provisioning end to end: the form, the operation and audit rows, real jobs through a real
Redis with a burst worker, the simulated hypervisor, and the pages that show the result."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer.models import DesktopTask, Operation
from composer.queue import queue
from pools.models import Datastore, Desktop, Pool, Replica
from pools.states import DesktopState

pytestmark = pytest.mark.django_db(transaction=True)


def pool_form(lab, **overrides):
    data = {
        "name": "Finance",
        "naming_pattern": "FIN-{n:fixed=3}",
        "size": 12,
        "image_version": lab.v1.pk,
        "datastores": [lab.ds["ds-a"].pk, lab.ds["ds-b"].pk],
        "overcommit": 4,
        "power_policy": "always_on",
        "persistent_disk_gb": 0,
        "max_concurrent_provisioning": 8,
        "domain": "corp.example",
    }
    data.update(overrides)
    return data


def test_admin_creates_pool_and_worker_provisions_it(client, users, lab, run_jobs):
    client.force_login(users["admin"])
    response = client.post(reverse("pools:create"), pool_form(lab, persistent_disk_gb=2))
    pool = Pool.objects.get(name="Finance")
    assert response.status_code == 302
    assert response["Location"] == reverse("pools:detail", args=[pool.pk])

    # Recorded and queued, not yet done: every desktop waits in Provisioning.
    operation = Operation.objects.get(pool=pool)
    assert operation.status == Operation.Status.QUEUED
    assert operation.requested_by == users["admin"]
    assert queue().job_ids == [operation.job_id]
    assert set(Desktop.objects.filter(pool=pool).values_list("state", flat=True)) == {
        DesktopState.PROVISIONING
    }
    requested = AuditEvent.objects.get(operation=operation, outcome="requested")
    assert (requested.actor_name, requested.role, requested.action) == (
        "ada",
        "Administrators",
        "create_pool",
    )

    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED
    desktops = list(Desktop.objects.filter(pool=pool).order_by("name"))
    assert [d.name for d in desktops] == [f"FIN-{n:03d}" for n in range(1, 13)]
    assert {d.state for d in desktops} == {DesktopState.AVAILABLE}
    assert all(d.checkpoint and d.replica_id and d.driver_ref for d in desktops)
    assert set(DesktopTask.objects.filter(operation=operation).values_list("status", "step")) == {
        ("succeeded", "power")
    }

    # The hypervisor agrees with the inventory: clones on the datastores the rows say, from
    # the replica on that datastore, powered on, checkpointed, with their persistent disk.
    inventory = lab.sim.inventory()
    clones = {vm.name: vm for vm in inventory.vms if vm.kind == "clone"}
    assert set(clones) == {d.name for d in desktops}
    for desktop in desktops:
        vm = clones[desktop.name]
        assert vm.datastore == desktop.datastore.name
        assert vm.replica == desktop.replica.name
        assert vm.power == "on"
        assert vm.checkpoint == desktop.checkpoint
        assert vm.disks == (f"{desktop.name}-pd",)
    # Spread by free space: ds-b has twice ds-a's space, so it gets more clones.
    per_ds = {
        name: sum(1 for d in desktops if d.datastore.name == name) for name in ("ds-a", "ds-b")
    }
    assert per_ds["ds-b"] > per_ds["ds-a"] > 0
    replicas = Replica.objects.filter(image_version=lab.v1)
    assert {r.datastore.name for r in replicas} == {"ds-a", "ds-b"}
    assert {r.status for r in replicas} == {Replica.Status.READY}
    # Free space in the inventory is what the hypervisor reports after the work.
    for info in lab.sim.datastores():
        assert Datastore.objects.get(name=info.name).free_mb == info.free_mb

    outcome = AuditEvent.objects.get(operation=operation, outcome="succeeded")
    assert (outcome.actor_name, outcome.action) == ("ada", "provision")
    assert outcome.parameters == {"succeeded": 12, "failed": 0, "halted": 0, "skipped": 0}

    page = client.get(reverse("pools:detail", args=[pool.pk]))
    assert page.status_code == 200
    assert b"FIN-012" in page.content
    assert b"hx-trigger" not in page.content  # nothing is running: the page stops polling


def test_pool_that_does_not_fit_is_refused_and_nothing_is_created(client, users, lab):
    client.force_login(users["admin"])
    # ds-tiny: 25 GiB, a 20 GiB replica and 40 GiB parents: room for very few clones.
    response = client.post(
        reverse("pools:create"),
        pool_form(lab, size=40, datastores=[lab.ds["ds-tiny"].pk], overcommit=1),
    )
    assert response.status_code == 200
    errors = response.context["form"].errors["datastores"]
    assert len(errors) == 1
    assert "ds-tiny" in errors[0]
    # Over-commit None: 25 GiB holds no 40 GiB parent at all, so the whole pool is short.
    assert "ds-tiny: 0 more, limited by over-commit" in errors[0]
    assert "Short by 40 desktops" in errors[0]
    assert not Pool.objects.exists()
    assert not Desktop.objects.exists()
    assert not Operation.objects.exists()
    assert queue().count == 0


def test_shortfall_names_each_datastore_and_its_limit(client, users, lab):
    client.force_login(users["admin"])
    # Over-commit None (1x): ds-a (200 GiB) holds 200 / 40 = 5 clones of a 40 GiB parent;
    # ds-tiny holds 25 / 40 = 0. Eight asked, five fit: short by three.
    response = client.post(
        reverse("pools:create"),
        pool_form(lab, size=8, datastores=[lab.ds["ds-a"].pk, lab.ds["ds-tiny"].pk], overcommit=1),
    )
    message = response.context["form"].errors["datastores"][0]
    assert "ds-a: 5 more, limited by over-commit" in message
    assert "ds-tiny: 0 more, limited by over-commit" in message
    assert "Short by 3 desktops" in message
    assert queue().count == 0


def test_one_failing_desktop_makes_the_operation_partially_failed(client, users, lab, run_jobs):
    lab.sim.fail_desktop("FIN-004", "customize")
    client.force_login(users["admin"])
    client.post(reverse("pools:create"), pool_form(lab, size=6))
    run_jobs()

    operation = Operation.objects.get()
    assert operation.status == Operation.Status.PARTIALLY_FAILED
    failed = Desktop.objects.get(name="FIN-004")
    assert failed.state == DesktopState.ERROR
    assert "customize" in failed.reason and "simulated failure" in failed.reason
    others = Desktop.objects.exclude(name="FIN-004")
    assert {d.state for d in others} == {DesktopState.AVAILABLE}
    task = DesktopTask.objects.get(desktop=failed)
    assert (task.status, task.step) == ("failed", "customize")
    assert AuditEvent.objects.filter(
        operation=operation, outcome="partially_failed", actor_name="ada"
    ).exists()

    page = client.get(reverse("pools:detail", args=[operation.pool_id]))
    assert failed.reason.encode() in page.content


def test_replica_failure_fails_its_desktops_and_ends_the_operation(client, users, lab, run_jobs):
    lab.v1.snapshot = "no-such-snapshot"
    lab.v1.save()
    client.force_login(users["admin"])
    client.post(reverse("pools:create"), pool_form(lab, size=3))
    run_jobs()

    operation = Operation.objects.get()
    assert operation.status == Operation.Status.FAILED
    assert {d.state for d in Desktop.objects.all()} == {DesktopState.ERROR}
    assert all("replica" in d.reason for d in Desktop.objects.all())
    assert not [vm for vm in lab.sim.inventory().vms if vm.kind == "clone"]


def test_provisioning_never_exceeds_the_pools_concurrency_limit(client, users, lab, run_jobs):
    client.force_login(users["admin"])
    client.post(reverse("pools:create"), pool_form(lab, size=7, max_concurrent_provisioning=3))
    operation = Operation.objects.get()

    run_jobs(max_jobs=1)  # only the operation job: replicas, then the first dispatch
    in_flight = DesktopTask.objects.filter(status__in=DesktopTask.IN_FLIGHT)
    assert in_flight.count() == 3
    assert queue().count == 3

    run_jobs(max_jobs=1)  # one desktop finishes and hands its slot to the next
    assert DesktopTask.objects.filter(status="succeeded").count() == 1
    assert in_flight.count() == 3

    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED


def test_helpdesk_cannot_create_a_pool(client, users, lab):
    client.force_login(users["helpdesk"])
    assert client.get(reverse("pools:create")).status_code == 403
    response = client.post(reverse("pools:create"), pool_form(lab))
    assert response.status_code == 403
    assert not Pool.objects.exists()
    assert queue().count == 0
    denied = AuditEvent.objects.filter(outcome="denied", actor_name="hal", action="create_pool")
    assert denied.count() == 2


def test_service_checks_permission_even_without_the_view(users, lab):
    from django.core.exceptions import PermissionDenied

    from composer.services import PoolSpec, create_pool

    spec = PoolSpec(
        name="Sneaky",
        naming_pattern="SNK-{n}",
        size=1,
        datastores=[lab.ds["ds-a"]],
        image_version=lab.v1,
        overcommit=4,
    )
    with pytest.raises(PermissionDenied):
        create_pool(users["auditor"], spec)
    assert not Pool.objects.exists()
    assert AuditEvent.objects.filter(outcome="denied", actor_name="aud").count() == 1
