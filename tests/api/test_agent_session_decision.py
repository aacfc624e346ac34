"""The session decision (pools/sessions.py): a user, nobody, or unknown."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from pools import sessions
from pools.states import DesktopState as S

NOW = timezone.now()


def desktop(state=S.AVAILABLE, user="", reported=None):
    return SimpleNamespace(state=state, session_user=user, session_reported_at=reported)


def test_a_hypervisor_that_reports_sessions_is_the_truth():
    assert sessions.session_of(desktop(user="ann"), True, NOW) == sessions.Session("user", "ann")
    assert sessions.session_of(desktop(), True, NOW).status == sessions.NOBODY


@pytest.mark.parametrize(
    ("user", "age", "expected"),
    [
        ("ann", 10, sessions.USER),
        ("", 10, sessions.NOBODY),
        ("ann", 901, sessions.UNKNOWN),  # the default timeout is 900 s
        ("", 901, sessions.UNKNOWN),
        ("", None, sessions.UNKNOWN),  # never reported
    ],
)
def test_agent_reports_count_until_the_timeout(user, age, expected):
    reported = None if age is None else NOW - timedelta(seconds=age)
    found = sessions.session_of(desktop(user=user, reported=reported), False, NOW)
    assert found.status == expected
    assert found.logged_on == (expected != sessions.NOBODY)


def test_the_timeout_is_a_setting(settings):
    settings.AGENT_SESSION_TIMEOUT_SECONDS = 60
    reported = NOW - timedelta(seconds=61)
    assert sessions.session_of(desktop(user="ann", reported=reported), False, NOW).unknown


@pytest.mark.parametrize("state", [S.PROVISIONED, S.PROVISIONING, S.CUSTOMIZING, S.DELETING])
def test_a_desktop_that_cannot_be_running_has_nobody(state):
    assert sessions.session_of(desktop(state=state), False, NOW).status == sessions.NOBODY


def test_shown_as_text():
    assert str(sessions.Session(sessions.UNKNOWN)) == "unknown"
    assert str(sessions.Session(sessions.USER, "ann")) == "ann"
    assert str(sessions.Session(sessions.NOBODY)) == ""
