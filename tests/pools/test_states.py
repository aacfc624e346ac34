"""The desktop state machine (pools/states.py; DESIGN.md "Desktop states" and "The operations").

Desktops here are plain objects, so no database is needed.
"""

import datetime as dt
import itertools
from types import SimpleNamespace

import pytest

from pools import states
from pools.states import ALLOWED, DesktopState, IllegalTransition, check, transition

S = DesktopState
ALL_STATES = list(DesktopState)
ALLOWED_PAIRS = [(old, new) for old in ALL_STATES for new in sorted(ALLOWED[old])]
FORBIDDEN_PAIRS = [
    (old, new) for old, new in itertools.product(ALL_STATES, ALL_STATES) if new not in ALLOWED[old]
]
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def desktop(state, reason=""):
    saves = []
    return SimpleNamespace(
        name="VDI-001",
        state=state,
        reason=reason,
        state_changed_at=LONG_AGO,
        saves=saves,
        save=lambda **kwargs: saves.append(kwargs),
    )


@pytest.fixture
def frozen_now(monkeypatch):
    monkeypatch.setattr(states.timezone, "now", lambda: NOW)
    return NOW


def _id(pair):
    return f"{pair[0].value}->{pair[1].value}"


def test_every_state_has_an_entry_in_allowed():
    assert set(ALLOWED) == set(ALL_STATES)


def test_allowed_only_names_known_states():
    for targets in ALLOWED.values():
        assert targets <= set(ALL_STATES)


def test_both_allowed_and_forbidden_pairs_exist():
    # Guards the parametrized tests below against a table that allows everything or nothing.
    assert ALLOWED_PAIRS and FORBIDDEN_PAIRS
    assert len(ALLOWED_PAIRS) + len(FORBIDDEN_PAIRS) == len(ALL_STATES) ** 2


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_id)
def test_allowed_transition_changes_state(pair):
    old, new = pair
    d = desktop(old)
    transition(d, new, save=False)
    assert d.state == new
    check(d.name, old, new)  # does not raise


@pytest.mark.parametrize("pair", FORBIDDEN_PAIRS, ids=_id)
def test_forbidden_transition_raises_and_leaves_desktop_untouched(pair):
    old, new = pair
    d = desktop(old, reason="earlier failure" if old == S.ERROR else "")
    before = dict(vars(d))
    with pytest.raises(IllegalTransition) as info:
        transition(d, new)
    assert d.state == old
    assert vars(d) == before
    assert d.saves == []
    assert (info.value.old, info.value.new) == (old, new)
    assert "VDI-001" in str(info.value)


def test_check_accepts_plain_string_states():
    # Desktops loaded from the database carry plain strings, not enum members.
    check("VDI-001", "provisioning", "customizing")
    with pytest.raises(IllegalTransition):
        check("VDI-001", "provisioning", "available")


def test_check_rejects_unknown_old_state():
    with pytest.raises(IllegalTransition):
        check("VDI-001", "no-such-state", S.ERROR)


def test_self_transitions_are_not_allowed():
    for state in ALL_STATES:
        with pytest.raises(IllegalTransition):
            check("VDI-001", state, state)


def test_error_keeps_its_reason():
    d = desktop(S.PROVISIONING)
    transition(d, S.ERROR, reason="clone failed: datastore full", save=False)
    assert d.state == S.ERROR
    assert d.reason == "clone failed: datastore full"


def test_leaving_error_clears_the_reason():
    d = desktop(S.ERROR, reason="clone failed")
    transition(d, S.MAINTENANCE, reason="ignored outside Error", save=False)
    assert d.state == S.MAINTENANCE
    assert d.reason == ""


def test_reason_given_for_a_non_error_state_is_not_kept():
    d = desktop(S.AVAILABLE)
    transition(d, S.CONNECTED, reason="should not stick", save=False)
    assert d.reason == ""


def test_transition_updates_state_changed_at(frozen_now):
    d = desktop(S.PROVISIONED)
    transition(d, S.AVAILABLE, save=False)
    assert d.state_changed_at == frozen_now


def test_transition_uses_real_clock_when_not_frozen():
    d = desktop(S.PROVISIONED)
    transition(d, S.AVAILABLE, save=False)
    assert d.state_changed_at > LONG_AGO
    assert d.state_changed_at.tzinfo is not None


def test_save_true_saves_exactly_the_state_fields():
    d = desktop(S.PROVISIONED)
    transition(d, S.AVAILABLE)
    assert len(d.saves) == 1
    assert set(d.saves[0]["update_fields"]) == {
        "state",
        "reason",
        "state_changed_at",
        "updated_at",
    }


def test_save_false_does_not_save():
    d = desktop(S.PROVISIONED)
    transition(d, S.AVAILABLE, save=False)
    assert d.saves == []


@pytest.mark.parametrize("end", [S.PROVISIONED, S.AVAILABLE, S.ERROR])
def test_maintenance_can_end_in_ready_or_error(end):
    # DESIGN: an operation returns a desktop to Provisioned or Available by power policy, or Error.
    d = desktop(S.MAINTENANCE)
    transition(d, end, reason="boom", save=False)
    assert d.state == end


@pytest.mark.parametrize("state", [S.PROVISIONED, S.AVAILABLE, S.CONNECTED, S.DISCONNECTED])
def test_every_operation_can_put_a_ready_desktop_into_maintenance(state):
    d = desktop(state)
    transition(d, S.MAINTENANCE, save=False)
    assert d.state == S.MAINTENANCE


def test_error_desktop_can_be_repaired_by_maintenance():
    # DESIGN complaint: desktops stuck in Error with no way back but another recompose.
    d = desktop(S.ERROR, reason="recompose failed")
    transition(d, S.MAINTENANCE, save=False)
    transition(d, S.AVAILABLE, save=False)
    assert d.state == S.AVAILABLE
    assert d.reason == ""


def test_error_desktop_can_be_provisioned_again_or_deleted():
    assert {S.PROVISIONING, S.DELETING} <= ALLOWED[S.ERROR]


def test_no_state_is_a_dead_end():
    for state in ALL_STATES:
        assert ALLOWED[state], f"{state} has no way out"


def test_every_state_can_eventually_be_deleted():
    # Breadth-first search over ALLOWED: no desktop is stuck in a corner of the graph.
    for start in ALL_STATES:
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for s in frontier for n in ALLOWED[s] if n not in seen]
            seen.update(frontier)
        assert S.DELETING in seen or start == S.DELETING
        assert S.AVAILABLE in seen, f"{start} can never become Available again"


def test_provisioning_never_goes_straight_to_available():
    d = desktop(S.PROVISIONING)
    with pytest.raises(IllegalTransition):
        transition(d, S.AVAILABLE, save=False)
    assert d.state == S.PROVISIONING


def test_provisioning_reaches_available_through_customizing():
    d = desktop(S.PROVISIONING)
    for step in (S.CUSTOMIZING, S.AVAILABLE, S.CONNECTED, S.DISCONNECTED):
        transition(d, step, save=False)
    assert d.state == S.DISCONNECTED


def test_failed_clone_goes_to_error_with_reason():
    d = desktop(S.PROVISIONING)
    transition(d, S.ERROR, reason="InsufficientSpace on ds-a")
    assert (d.state, d.reason) == (S.ERROR, "InsufficientSpace on ds-a")
    assert len(d.saves) == 1
