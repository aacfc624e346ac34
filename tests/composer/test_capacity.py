"""Datastore room and clone placement (composer/capacity.py; DESIGN.md "Capacity and over-commit").

Sizes are MiB; GIB = 1024. A new clone really takes NEW_CLONE_DELTA_MB (512) plus its
persistent disk, and counts as its full parent disk against over-commit.
"""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.capacity import (
    NEW_CLONE_DELTA_MB,
    Clone,
    DatastoreRoom,
    DoesNotFit,
    Room,
    place,
    room,
)
from pools.models import Overcommit

GIB = 1024
DELTA = NEW_CLONE_DELTA_MB
AMPLE = 10_000 * GIB  # far more free space than any over-commit limit below needs
PARENT = Clone(disk_mb=10 * GIB, replica_mb=20 * GIB)


def ds(
    name="ds-a", capacity_mb=100 * GIB, free_mb=AMPLE, overcommit=4, committed_mb=0, replica=True
):
    return DatastoreRoom(name, capacity_mb, free_mb, overcommit, committed_mb, replica)


def remaining_free(d: DatastoreRoom, clone: Clone, placed: int) -> int:
    return d.free_mb - (0 if d.has_replica else clone.replica_mb) - placed * clone.real_mb


# --- room(): over-commit -------------------------------------------------------------------


def test_design_example_100gb_datastore_10gb_parent_conservative_holds_40():
    assert room(ds(overcommit=Overcommit.CONSERVATIVE), PARENT) == Room("ds-a", 40, "over-commit")


@pytest.mark.parametrize(
    "level, clones",
    [
        # 100 GB x factor / 10 GB per clone = 10 x factor.
        (Overcommit.NONE, 10),
        (Overcommit.CONSERVATIVE, 40),
        (Overcommit.MODERATE, 70),
        (Overcommit.AGGRESSIVE, 150),
    ],
)
def test_each_overcommit_factor_bounds_the_clone_count(level, clones):
    r = room(ds(overcommit=level), PARENT)
    assert (r.clones, r.limited_by) == (clones, "over-commit")


def test_overcommit_factors_match_design():
    assert [o.value for o in Overcommit] == [1, 4, 7, 15, 0]


def test_unbounded_overcommit_leaves_free_space_to_decide():
    # 100 clones' worth of real space (replica already there); no over-commit limit at all,
    # although 100 x 10 GB is ten times the 100 GB capacity.
    r = room(ds(overcommit=Overcommit.UNBOUNDED, free_mb=100 * DELTA), PARENT)
    assert (r.clones, r.limited_by) == (100, "free space")


def test_committed_clones_reduce_overcommit_room():
    # 400 GB allowed at 4x, 35 clones of 10 GB already there: 50 GB left = 5 clones.
    r = room(ds(committed_mb=35 * 10 * GIB), PARENT)
    assert (r.clones, r.limited_by) == (5, "over-commit")


def test_partial_parent_disk_of_overcommit_room_does_not_count():
    # 9.99 clones' worth of over-commit room holds 9.
    r = room(ds(overcommit=1, committed_mb=GIB // 10), PARENT)
    assert r.clones == 9


def test_overcommit_already_exceeded_gives_zero_not_negative():
    r = room(ds(overcommit=1, committed_mb=500 * GIB), PARENT)
    assert (r.clones, r.limited_by) == (0, "over-commit")


# --- room(): real free space ---------------------------------------------------------------


def test_datastore_without_replica_needs_the_replica_first():
    # 20 GB replica + 3 clones + 511 MiB spare: the replica comes first, then 3 clones fit.
    free = PARENT.replica_mb + 3 * DELTA + DELTA - 1
    r = room(ds(free_mb=free, replica=False), PARENT)
    assert (r.clones, r.limited_by) == (3, "free space")


def test_datastore_with_replica_uses_all_free_space_for_clones():
    # Same free space, replica already there: 20 GB = 40 x 512 MiB, so 40 + 3 clones.
    free = PARENT.replica_mb + 3 * DELTA + DELTA - 1
    r = room(ds(free_mb=free, replica=True, overcommit=0), PARENT)
    assert (r.clones, r.limited_by) == (43, "free space")


@pytest.mark.parametrize("free", [0, DELTA, PARENT.replica_mb - 1, PARENT.replica_mb])
def test_free_space_not_beyond_the_replica_gives_no_room(free):
    r = room(ds(free_mb=free, replica=False, overcommit=0), PARENT)
    assert (r.clones, r.limited_by) == (0, "free space")


def test_negative_free_space_gives_zero_room():
    # free_mb is "free less pending work", which can go below zero.
    assert room(ds(free_mb=-5 * GIB), PARENT).clones == 0


def test_persistent_disk_counts_against_free_space():
    # 1 GB persistent disk: each clone takes 512 + 1024 = 1536 MiB; 10 x 1536 = 15360.
    clone = Clone(disk_mb=10 * GIB, replica_mb=0, extra_mb=GIB)
    assert clone.real_mb == 1536
    assert room(ds(free_mb=15_360 + 1535, overcommit=0), clone).clones == 10


def test_free_space_smaller_than_overcommit_room_is_the_limit():
    # Over-commit allows 40, real space only 12.
    r = room(ds(free_mb=12 * DELTA), PARENT)
    assert (r.clones, r.limited_by) == (12, "free space")


def test_overcommit_smaller_than_free_space_is_the_limit():
    r = room(ds(overcommit=1, free_mb=12 * DELTA), PARENT)
    assert (r.clones, r.limited_by) == (10, "over-commit")


# --- place() -------------------------------------------------------------------------------
# The rule in place()'s docstring: each clone goes where (placed + 1) / room is lowest
# (highest-averages apportionment), ties to the name that sorts first.


def spread_lab():
    # Free space in units of one clone, replicas present, no over-commit limit:
    # rooms are a=10, b=6, c=2.
    return [
        ds("ds-a", free_mb=10 * DELTA, overcommit=0),
        ds("ds-b", free_mb=6 * DELTA, overcommit=0),
        ds("ds-c", free_mb=2 * DELTA, overcommit=0),
    ]


def test_datastore_with_most_room_gets_the_first_clone():
    assert place(1, spread_lab(), PARENT) == ["ds-a"]
    assert place(1, list(reversed(spread_lab())), PARENT) == ["ds-a"]


def test_clones_are_spread_in_proportion_to_room_clone_by_clone():
    # Scores (placed + 1) / room, lowest wins, ties to the first name:
    # a .1 | b .167 | a .2 | a .3 (b .333) | b .333 (a .4) | a .4 | a .5 (tie a,b,c) |
    # b .5 (a .6, tie b,c) | c .5 (b .667)
    got = place(9, spread_lab(), PARENT)
    assert got == ["ds-a", "ds-b", "ds-a", "ds-a", "ds-b", "ds-a", "ds-a", "ds-b", "ds-c"]


def test_half_the_room_fills_every_datastore_to_half():
    # 9 of 18: a 5 of 10, b 3 of 6, c 1 of 2.
    assert Counter(place(9, spread_lab(), PARENT)) == {"ds-a": 5, "ds-b": 3, "ds-c": 1}


def test_placement_uses_room_after_the_replica():
    # ds-a has more raw free space but needs a 20 GB replica: 30 - 20 = 10 GB = 20 clones of
    # room; ds-b has its replica and 15 GB = 30 clones. So ds-b first, then 2:3 over five.
    datastores = [
        ds("ds-a", free_mb=30 * GIB, overcommit=0, replica=False),
        ds("ds-b", free_mb=15 * GIB, overcommit=0, replica=True),
    ]
    assert place(5, datastores, PARENT) == ["ds-b", "ds-a", "ds-b", "ds-a", "ds-b"]


def test_placement_respects_overcommit_on_the_roomiest_datastore():
    # ds-a has the most free space but over-commit lets it take 1 more (committed 39 of 40),
    # so its room is 1 against ds-b's 10: it gets nothing until ds-b is full.
    datastores = [
        ds("ds-a", free_mb=100 * DELTA, committed_mb=39 * 10 * GIB),
        ds("ds-b", free_mb=10 * DELTA),
    ]
    assert Counter(place(6, datastores, PARENT)) == {"ds-b": 6}
    assert Counter(place(11, datastores, PARENT)) == {"ds-a": 1, "ds-b": 10}


def test_datastore_without_room_gets_nothing():
    datastores = [ds("ds-a", free_mb=GIB, replica=False), ds("ds-b", free_mb=3 * DELTA)]
    assert place(3, datastores, PARENT) == ["ds-b"] * 3


def test_placement_can_use_every_last_clone_of_room():
    got = Counter(place(18, spread_lab(), PARENT))
    assert got == {"ds-a": 10, "ds-b": 6, "ds-c": 2}


def test_placing_nothing_returns_nothing():
    assert place(0, spread_lab(), PARENT) == []


def test_placement_is_deterministic_and_ignores_input_order():
    datastores = [
        ds("ds-a", free_mb=7 * DELTA, overcommit=0),
        ds("ds-b", free_mb=7 * DELTA, overcommit=0),
        ds("ds-c", free_mb=7 * DELTA, overcommit=0),
    ]
    first = place(10, datastores, PARENT)
    assert place(10, datastores, PARENT) == first
    assert place(10, list(reversed(datastores)), PARENT) == first
    # Equal room: ties go to the name that sorts first, round after round.
    assert first[:4] == ["ds-a", "ds-b", "ds-c", "ds-a"]


def test_ties_go_to_the_name_that_sorts_first_even_for_prefixes():
    # "ds1" sorts before "ds10".
    datastores = [ds("ds10", free_mb=5 * DELTA), ds("ds1", free_mb=5 * DELTA)]
    assert place(1, datastores, PARENT) == ["ds1"]


def test_does_not_fit_names_every_datastore_its_limit_and_the_shortfall():
    datastores = [
        ds("ds-a", overcommit=1, committed_mb=8 * 10 * GIB),  # 10 - 8 = 2 by over-commit
        ds("ds-b", free_mb=3 * DELTA, overcommit=0),  # 3 by free space
        ds("ds-c", free_mb=GIB, replica=False),  # 0: 1 GB is less than the replica
    ]
    with pytest.raises(DoesNotFit) as info:
        place(10, datastores, PARENT)
    err = info.value
    assert (err.requested, err.available, err.shortfall) == (10, 5, 5)
    message = str(err)
    assert "ds-a: 2 more, limited by over-commit" in message
    assert "ds-b: 3 more, limited by free space" in message
    assert "ds-c: 0 more, limited by free space" in message
    assert "Short by 5 desktops" in message


def test_does_not_fit_by_one_says_one_desktop():
    with pytest.raises(DoesNotFit, match=r"Short by 1 desktop\."):
        place(3, [ds(free_mb=2 * DELTA)], PARENT)


def test_no_datastores_fit_nothing():
    with pytest.raises(DoesNotFit) as info:
        place(1, [], PARENT)
    assert info.value.shortfall == 1
    assert place(0, [], PARENT) == []


# --- properties ----------------------------------------------------------------------------


@st.composite
def scenarios(draw):
    n = draw(st.integers(0, 5))
    datastores = [
        DatastoreRoom(
            name=f"ds-{chr(ord('a') + i)}",
            capacity_mb=draw(st.integers(1, 400 * GIB)),
            free_mb=draw(st.integers(-GIB, 120 * GIB)),
            overcommit=draw(st.sampled_from([o.value for o in Overcommit])),
            committed_mb=draw(st.integers(0, 2000 * GIB)),
            has_replica=draw(st.booleans()),
        )
        for i in range(n)
    ]
    clone = Clone(
        disk_mb=draw(st.integers(1, 60 * GIB)),
        replica_mb=draw(st.integers(0, 40 * GIB)),
        extra_mb=draw(st.sampled_from([0, 0, 1024, 5 * GIB])),
    )
    count = draw(st.integers(0, 150))
    return datastores, clone, count


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_place_fits_exactly_when_total_room_suffices(scenario):
    datastores, clone, count = scenario
    rooms = {d.name: room(d, clone) for d in datastores}
    total = sum(r.clones for r in rooms.values())
    if total < count:
        with pytest.raises(DoesNotFit) as info:
            place(count, datastores, clone)
        assert info.value.shortfall == count - total
        return
    got = place(count, datastores, clone)
    assert len(got) == count
    placed = Counter(got)
    assert set(placed) <= set(rooms)
    for d in datastores:
        k = placed[d.name]
        assert k <= rooms[d.name].clones
        # Never past either limit, checked from the rules rather than from room().
        if k:
            assert remaining_free(d, clone, k) >= 0
            if d.overcommit:
                assert d.committed_mb + k * clone.disk_mb <= d.capacity_mb * d.overcommit


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_place_fills_datastores_to_the_same_fraction_of_room(scenario):
    # Each clone goes where (placed + 1) / room is lowest. So at the last clone a datastore i
    # received, k_i / room_i <= (k_j_then + 1) / room_j <= (k_j + 1) / room_j for every j with
    # room: no datastore is more than one clone ahead of any other, relative to room.
    # Summing that gives lower quota: k_i >= floor(count * room_i / total room).
    datastores, clone, count = scenario
    rooms = {d.name: room(d, clone).clones for d in datastores}
    total = sum(rooms.values())
    count = min(count, total)
    placed = Counter(place(count, datastores, clone))
    usable = [n for n, r in rooms.items() if r > 0]
    for i in placed:
        for j in usable:
            # Cross-multiplied to stay in integers.
            assert placed[i] * rooms[j] <= (placed[j] + 1) * rooms[i]
    for n in usable:
        assert placed[n] >= count * rooms[n] // total
