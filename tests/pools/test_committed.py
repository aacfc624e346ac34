"""Committed size per datastore, the one rule over-commit is checked against: each linked
clone at its parent disk's full size, whatever its pool (Desktop.objects)."""

import pytest

from composer.services import datastore_rooms
from pools.models import Desktop
from pools.usage import datastore_usage
from tests import factories
from tests.factories import GIB

pytestmark = pytest.mark.django_db


def test_each_clone_counts_its_parent_disk_on_its_datastore_whatever_its_pool():
    endpoint = factories.endpoint()
    a, b, empty = (factories.datastore(endpoint, name) for name in ("ds-a", "ds-b", "ds-c"))
    image = factories.image(endpoint)
    small, large = (
        factories.version(image, "v1", 10 * GIB),
        factories.version(image, "v2", 30 * GIB),
    )
    one = factories.pool("One", small, [a, b])
    two = factories.pool("Two", large, [a])
    factories.desktops(one, ["O-1", "O-2"], a)
    factories.desktops(one, ["O-3"], b, image_version=large)  # not recomposed yet
    factories.desktops(two, ["T-1"], a)
    expected = {a.pk: 50 * GIB, b.pk: 30 * GIB}
    assert Desktop.objects.committed_mb_by_datastore() == expected
    assert Desktop.objects.committed_mb_by_datastore([b.pk, empty.pk]) == {b.pk: 30 * GIB}
    # The pages and the placement of new desktops read the same figures.
    assert {u.datastore.pk: u.committed_mb for u in datastore_usage()} == expected | {empty.pk: 0}
    rooms = datastore_rooms([a, b, empty], small, 4)
    assert [r.committed_mb for r in rooms] == [50 * GIB, 30 * GIB, 0]
