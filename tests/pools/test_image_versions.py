"""Registering an image version from the Images page: the hypervisor is asked whether the
snapshot exists and for its sizes; nothing is typed in that the hypervisor knows better."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from composer import images
from pools.models import ImageVersion

pytestmark = pytest.mark.django_db

GIB = 1024


def register(client, image, snapshot):
    response = client.post(
        reverse("pools:image_version_add", args=[image.pk]), {"snapshot": snapshot}, follow=True
    )
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_a_snapshot_the_hypervisor_has_is_registered_with_its_sizes(client, users, lab):
    lab.sim.add_parent_vm("gold", ["v1", "v2", "v3"], disk_mb=60 * GIB, used_mb=25 * GIB)
    image = lab.v1.image
    client.force_login(users["admin"])
    shown = register(client, image, "  v3 ")
    version = ImageVersion.objects.get(image=image, snapshot="v3")
    assert (version.disk_mb, version.used_mb) == (60 * GIB, 25 * GIB)
    assert version.snapshot_ref and image.versions.count() == 3
    image.refresh_from_db()
    assert image.parent_ref == lab.sim.get_vm("gold").ref
    assert shown == [
        (
            "success",
            f"Win11 @ v3: registered (system disk {60 * GIB} MiB, replica {25 * GIB} MiB, "
            "as the hypervisor reports them).",
        )
    ]
    event = AuditEvent.objects.get(action="register_image_version")
    assert event.outcome == "succeeded" and event.parameters["disk_mb"] == 60 * GIB


@pytest.mark.parametrize(
    "snapshot, why",
    [
        ("v9", "snapshot v9 of gold not found"),
        ("v1", "Win11 @ v1 is registered already."),
        ("", "Name the snapshot to register."),
        ("a\x07b", "no control characters"),
        ("x" * 300, "at most 255 characters"),
    ],
)
def test_a_snapshot_it_does_not_have_is_refused_with_the_reason(client, users, lab, snapshot, why):
    client.force_login(users["admin"])
    [(level, text)] = register(client, lab.v1.image, snapshot)
    assert level == "error" and why in text
    assert lab.v1.image.versions.count() == 2
    event = AuditEvent.objects.get(action="register_image_version")
    assert event.outcome == "refused"


def test_the_images_page_offers_the_form_to_administrators_only(client, users, lab):
    url = reverse("pools:images")
    action = reverse("pools:image_version_add", args=[lab.v1.image.pk])
    client.force_login(users["admin"])
    assert action in client.get(url).content.decode()
    client.force_login(users["auditor"])
    assert action not in client.get(url).content.decode()


def test_the_admin_shows_versions_but_does_not_add_them_unchecked(client, users, lab):
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    image = lab.v1.image
    page = client.get(reverse("admin:pools_baseimage_change", args=[image.pk]))
    assert page.status_code == 200
    assert "v1" in page.content.decode() and 'name="versions-0-snapshot"' not in (
        page.content.decode()
    )
    assert client.get(reverse("admin:pools_imageversion_add")).status_code == 403


def test_the_service_refuses_a_nul_byte_too_and_audits_it_printable(users, lab):
    # Over HTTP the request is refused before the view (RejectNulMiddleware); the service
    # holds on its own for any other caller.
    with pytest.raises(images.VersionRefused, match="no control characters"):
        images.register_version(users["admin"], lab.v1.image, "a\x00b")
    event = AuditEvent.objects.get(action="register_image_version")
    assert event.parameters["snapshot"] == "a\\x00b"
