"""Telling a database outage from a bug (composer/outages.py); the outage itself is tested
end to end in tests/resilience/test_database_cut.py."""

import pytest
from django.db import OperationalError

from composer import outages


@pytest.mark.django_db
def test_an_operational_error_while_the_database_answers_is_not_an_outage():
    # sqlite's "no such table" is an OperationalError too: a bug, shown as one (500).
    assert not outages.is_database_unreachable(OperationalError("no such table: x"))
    assert not outages.is_database_unreachable(ValueError("unrelated"))
