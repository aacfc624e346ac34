"""The demo has somebody to help (issue 10, item 3): its desktops are assigned to users, and a
few of them are logged on once the worker has provisioned the pool."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from composer.models import Operation
from composer.queue import queue
from pools.models import Desktop
from pools.states import DesktopState
from portal import demo

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_pool_has_assigned_users_and_some_logged_on(
    settings, tmp_path, redis_conn, run_jobs, client
):
    settings.DATA_DIR = tmp_path
    call_command("demo_data")
    provision = Operation.objects.get(kind="provision")
    assert sorted(Desktop.objects.values_list("assigned_user", flat=True)) == sorted(demo.USERS)

    run_jobs(max_jobs=2)  # the provision's start, then the log-on job: not provisioned yet
    assert queue().scheduled_job_registry.count == 1  # it looks again in a few seconds
    run_jobs()
    provision.refresh_from_db()
    assert provision.status == Operation.Status.SUCCEEDED
    assert demo.log_on_when_provisioned(provision.pk) == (
        "logged on: alice.johnson, bob.smith, carol.diaz"
    )
    connected = Desktop.objects.filter(state=DesktopState.CONNECTED).order_by("name")
    assert [(d.name, d.session_user) for d in connected] == [
        ("ENG-001", "alice.johnson"),
        ("ENG-002", "bob.smith"),
        ("ENG-003", "carol.diaz"),
    ]

    # The helpdesk finds them by the name of the user on the phone.
    password = json.loads((tmp_path / "demo_logins.json").read_text())["helpdesk"]
    signed_in = client.post(reverse("login"), {"username": "helpdesk", "password": password})
    assert signed_in.status_code == 302
    page = client.get(reverse("helpdesk"), {"q": "bob"})
    assert [d.name for d in page.context["desktops"]] == ["ENG-002"]
    assert b"bob.smith" in page.content and b"Connected" in page.content
