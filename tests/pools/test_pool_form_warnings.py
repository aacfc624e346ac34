"""The pool form warns before a choice turns a shared datastore red (issue 10, item 13): a
15x pool fits by its own level on a datastore 4x pools share, but passes the dashboard's
warning level against theirs. Said on the form; created once the administrator confirms."""

import pytest
from django.urls import reverse

from composer import services
from pools.models import Pool

pytestmark = pytest.mark.django_db(transaction=True)


def form(lab, name, size, overcommit, **extra):
    return {
        "name": name,
        "naming_pattern": f"{name[:3].upper()}-{{n:fixed=2}}",
        "size": size,
        "image_version": lab.v1.pk,
        "datastores": [lab.ds["ds-a"].pk],
        "overcommit": overcommit,
        "power_policy": "off",
        "persistent_disk_gb": 0,
        "max_concurrent_provisioning": 8,
        **extra,
    }


def test_a_pool_that_would_push_a_shared_datastore_over_its_warning_level_asks_first(
    client, users, lab
):
    # ds-a holds 200 GiB: at 4x, 800 GiB of 40 GiB parents, 20 clones. Sales takes 16 (80%).
    services.create_pool(
        users["admin"],
        services.PoolSpec(
            name="Sales",
            naming_pattern="SAL-{n:fixed=2}",
            size=16,
            datastores=[lab.ds["ds-a"]],
            image_version=lab.v1,
            overcommit=4,
        ),
    )
    client.force_login(users["admin"])
    # One more clone at 15x: 680 of 800 GiB (85%) against Sales's 4x, under the 95% mark.
    assert client.post(reverse("pools:create"), form(lab, "Calm", 1, 15)).status_code == 302

    # Two more: 760 of 800 GiB, 95%. It fits by its own 15x level, so it is not refused, but
    # the form says what it does to the datastore and asks.
    page = client.post(reverse("pools:create"), form(lab, "Risky", 2, 15))
    assert page.status_code == 200
    errors = page.context["form"].errors["datastores"]
    assert errors == [
        "ds-a would be 95% committed against pool Sales's 4x over-commit level "
        "(the dashboard warns from 95%)."
    ]
    html = page.content.decode()
    assert 'type="checkbox" name="accept_warnings"' in html and "Create it anyway" in html
    assert not Pool.objects.filter(name="Risky").exists()

    confirmed = client.post(
        reverse("pools:create"), form(lab, "Risky", 2, 15, accept_warnings="on")
    )
    assert confirmed.status_code == 302
    assert Pool.objects.get(name="Risky").desktops.count() == 2
    # The form it came from never shows the checkbox unless there is something to accept.
    blank = client.get(reverse("pools:create")).content.decode()
    assert 'type="hidden" name="accept_warnings"' in blank
    assert "Create it anyway" not in blank
