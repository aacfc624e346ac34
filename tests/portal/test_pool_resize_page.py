"""The pool page's Resize: the size, what would happen (which desktops), then the resize;
the service's refusals shown on the form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from composer.models import Operation
from pools.models import Desktop
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(users, lab, run_jobs):
    made = factories.requested_pool(users["admin"], lab, "Paged", "PGD-{n}", 3)
    run_jobs()
    return made


def test_resize_shows_what_will_happen_then_does_it(client, users, pool, run_jobs):
    client.force_login(users["admin"])
    page = reverse("pools:resize", args=[pool.pk])
    assert f'href="{page}">Resize</a>' in client.get(pool.get_absolute_url()).content.decode()

    preview = client.post(page, {"size": 5}).content.decode()

    assert "2 desktops provisioned" in preview
    assert "PGD-4" in preview and "PGD-5" in preview
    assert pool.desktops.count() == 3  # nothing yet

    done = client.post(page, {"size": 5, "confirm": "on"})

    operation = Operation.objects.get(pool=pool, kind="provision", tasks__desktop_name="PGD-5")
    assert done.status_code == 302
    assert done["Location"] == reverse("composer:operation", args=[operation.pk])
    run_jobs()
    operation.refresh_from_db()
    assert operation.status == Operation.Status.SUCCEEDED

    Desktop.objects.filter(pool=pool, name="PGD-5").update(assigned_user="alice")
    shrinking = client.post(page, {"size": 4}).content.decode()
    assert "1 desktop deleted" in shrinking and ">PGD-4</a>" in shrinking


def test_refusals_are_form_errors(client, users, pool):
    client.force_login(users["admin"])
    page = reverse("pools:resize", args=[pool.pk])
    Desktop.objects.filter(pool=pool).update(assigned_user="alice")

    for data in ({"size": 1}, {"size": 1, "confirm": "on"}):
        response = client.post(page, data)
        assert response.status_code == 200
        assert "Only 0 of the 2 desktops" in response.content.decode()
    assert "do not fit" in client.post(page, {"size": 4000}).content.decode()
    assert pool.desktops.count() == 3
    assert not Operation.objects.filter(kind="delete").exists()
