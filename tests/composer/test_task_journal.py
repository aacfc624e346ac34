"""The database journal of vCenter tasks under way (composer/task_journal.py)."""

import pytest

from composer.models import HypervisorTask
from composer.task_journal import DatabaseJournal

pytestmark = pytest.mark.django_db


def test_one_task_per_key_and_endpoint_the_latest_wins(lab):
    journal = DatabaseJournal(lab.endpoint.pk)
    assert journal.get("clone:VDI-001") is None
    journal.put("clone:VDI-001", "task-1")
    journal.put("clone:VDI-001", "task-2")  # a retry started it again
    journal.put("power:VDI-001", "task-3")
    assert journal.get("clone:VDI-001") == "task-2"
    assert HypervisorTask.objects.filter(endpoint=lab.endpoint).count() == 2
    journal.drop("clone:VDI-001")
    journal.drop("clone:VDI-001")  # dropping twice is harmless
    assert journal.get("clone:VDI-001") is None and journal.get("power:VDI-001") == "task-3"
    # Journals are hashable by endpoint, so drivers can be cached per (settings, journal).
    assert DatabaseJournal(lab.endpoint.pk) == journal and len({journal, DatabaseJournal(0)}) == 2
