"""The rebalance planner (composer/rebalance_planner.py; DESIGN.md "Rebalance", "Capacity and
over-commit").

Sizes are MiB; GIB = 1024. The property tests recompute the slots from the definition in the
planner's docstring (reference_slots below) rather than trusting planner.slots, and check the
plan against them.
"""

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.rebalance_planner import (
    NO_ROOM,
    NOT_MOVABLE,
    Move,
    PlanDatastore,
    PlanDesktop,
    apply,
    plan,
    slots,
)

GIB = 1024
CONSERVATIVE = 4
AMPLE = 10_000 * GIB  # more free space than any over-commit limit below needs
REPLICA_MB = {"v1": 20 * GIB, "v2": 20 * GIB}


def ds(
    name,
    capacity_mb=100 * GIB,
    free_mb=AMPLE,
    overcommit=CONSERVATIVE,
    committed_mb=0,
    selected=True,
    replicas=("v1",),
):
    return PlanDatastore(
        name, capacity_mb, free_mb, overcommit, committed_mb, selected, frozenset(replicas)
    )


def desks(prefix, count, datastore, version="v1", disk_mb=10 * GIB, real_mb=512, movable=True):
    return [
        PlanDesktop(f"{prefix}{i:03}", datastore, version, disk_mb, real_mb, movable)
        for i in range(1, count + 1)
    ]


def holding(datastores, desktops):
    """The datastores with this pool's desktops' parent disks added to committed_mb."""
    disk = Counter()
    for d in desktops:
        disk[d.datastore] += d.disk_mb
    return [replace(x, committed_mb=x.committed_mb + disk[x.name]) for x in datastores]


def counts(desktops):
    return Counter(d.datastore for d in desktops)


# --- examples -------------------------------------------------------------------------------


def test_design_example_conservative_100gb_datastore_takes_40_clones_of_a_10gb_parent():
    old = desks("vd-", 50, "ds-old")
    stores = holding([ds("ds-old", selected=False), ds("ds-new")], old)
    assert slots(stores, old, REPLICA_MB)["ds-new"] == 40
    p = plan(stores, old, REPLICA_MB)
    assert len(p.moves) == 40
    assert p.targets == {"ds-new": 40, "ds-old": 10}
    assert p.unplaced == [f"vd-{i:03}" for i in range(41, 51)]
    assert set(p.reasons.values()) == {NO_ROOM}
    assert (
        p.usage["ds-new"].committed_after_mb == 400 * GIB == p.usage["ds-new"].overcommit_limit_mb
    )


def test_deselecting_one_of_two_datastores_moves_everything_to_the_other():
    pool = desks("vd-", 6, "ds-a") + desks("vx-", 6, "ds-b")
    stores = holding([ds("ds-a"), ds("ds-b", selected=False)], pool)
    p = plan(stores, pool, REPLICA_MB)
    assert p.moves == [Move(f"vx-{i:03}", "ds-b", "ds-a") for i in range(1, 7)]
    assert p.targets == {"ds-a": 12, "ds-b": 0}
    assert p.unplaced == [] and p.reasons == {}
    assert p.replicas_needed == []


def test_a_balanced_pool_moves_nothing():
    # Equal datastores, equal counts; and an odd count split 5/4 either way round.
    for a, b in ((10, 10), (5, 4), (4, 5)):
        pool = desks("va-", a, "ds-a") + desks("vb-", b, "ds-b")
        stores = holding([ds("ds-a"), ds("ds-b")], pool)
        p = plan(stores, pool, REPLICA_MB)
        assert p.moves == []
        assert p.targets == {"ds-a": a, "ds-b": b}


def test_a_pool_on_one_of_two_equal_datastores_moves_half():
    pool = desks("vd-", 20, "ds-a")
    stores = holding([ds("ds-a"), ds("ds-b", replicas=())], pool)
    p = plan(stores, pool, REPLICA_MB)
    assert p.targets == {"ds-a": 10, "ds-b": 10}
    assert p.moves == [Move(f"vd-{i:03}", "ds-a", "ds-b") for i in range(1, 11)]
    assert p.replicas_needed == [("v1", "ds-b")]


def test_spread_follows_free_space_when_space_binds():
    # Unbounded over-commit; ds-b has twice ds-a's free space for the pool, so twice its share.
    pool = desks("vd-", 30, "ds-a", real_mb=1 * GIB)
    stores = holding(
        [
            ds("ds-a", overcommit=0, free_mb=0),  # 30 slots: the pool's own 30 GiB
            ds("ds-b", overcommit=0, free_mb=60 * GIB + REPLICA_MB["v1"], replicas=()),  # 60
        ],
        pool,
    )
    assert slots(stores, pool, REPLICA_MB) == {"ds-a": 30, "ds-b": 60}
    p = plan(stores, pool, REPLICA_MB)
    assert p.targets == {"ds-a": 10, "ds-b": 20}
    assert len(p.moves) == 20


def test_unmovable_desktops_stay_and_are_reported_when_on_a_deselected_datastore():
    busy_old = desks("busy-", 2, "ds-old", movable=False)
    busy_a = desks("held-", 3, "ds-a", movable=False)
    free_old = desks("vd-", 4, "ds-old")
    pool = busy_old + busy_a + free_old
    stores = holding([ds("ds-old", selected=False), ds("ds-a"), ds("ds-b")], pool)
    p = plan(stores, pool, REPLICA_MB)
    moved = {m.desktop for m in p.moves}
    assert moved == {d.name for d in free_old}
    assert p.unplaced == ["busy-001", "busy-002"]
    assert p.reasons == {"busy-001": NOT_MOVABLE, "busy-002": NOT_MOVABLE}
    # ds-a already holds 3 that cannot move; 7 over two equal datastores is 4 + 3 (a tie at
    # 4, which goes to the first name).
    assert p.targets == {"ds-old": 2, "ds-a": 4, "ds-b": 3}


def test_a_datastore_at_its_overcommit_limit_receives_nothing():
    pool = desks("vd-", 8, "ds-old")
    stores = holding(
        [
            ds("ds-old", selected=False),
            ds("ds-full", committed_mb=400 * GIB),  # other pools use all of 100 GB x 4
            ds("ds-room"),
        ],
        pool,
    )
    p = plan(stores, pool, REPLICA_MB)
    assert {m.target for m in p.moves} == {"ds-room"}
    assert p.targets["ds-full"] == 0 and len(p.moves) == 8


def test_a_datastore_without_free_space_for_the_replica_receives_nothing():
    pool = desks("vd-", 4, "ds-old")
    stores = holding(
        [
            ds("ds-old", selected=False),
            ds("ds-tight", free_mb=REPLICA_MB["v1"] - 1, replicas=()),
            ds("ds-room"),
        ],
        pool,
    )
    p = plan(stores, pool, REPLICA_MB)
    assert {m.target for m in p.moves} == {"ds-room"}


def test_replicas_needed_lists_exactly_the_targets_lacking_the_version():
    pool = desks("vd-", 6, "ds-old") + desks("vn-", 3, "ds-old", version="v2")
    stores = holding(
        [
            ds("ds-old", selected=False),
            ds("ds-a", replicas=("v1", "v2")),
            ds("ds-b", replicas=("v1",)),
            ds("ds-c", replicas=()),
        ],
        pool,
    )
    p = plan(stores, pool, REPLICA_MB)
    version = {d.name: d.image_version for d in pool}
    has = {x.name: x.replicas for x in stores}
    needed = {
        (version[m.desktop], m.target) for m in p.moves if version[m.desktop] not in has[m.target]
    }
    assert p.replicas_needed == sorted(needed)
    assert p.targets == {"ds-old": 0, "ds-a": 3, "ds-b": 3, "ds-c": 3}
    # ds-a and ds-b have the v1 replica and take v1 desktops; ds-c has none, so it takes one
    # version only (the v2 desktops) and needs just that replica.
    assert {m.desktop for m in p.moves if m.target == "ds-c"} == {"vn-001", "vn-002", "vn-003"}
    assert p.replicas_needed == [("v2", "ds-c")]
    # The preview counts the replica on ds-c as well as the three deltas.
    usage = p.usage["ds-c"]
    assert usage.real_used_after_mb - usage.real_used_before_mb == REPLICA_MB["v2"] + 3 * 512


def test_usage_before_and_after_for_the_preview():
    pool = desks("vd-", 4, "ds-a", real_mb=2 * GIB)
    stores = holding([ds("ds-a", free_mb=50 * GIB), ds("ds-b", free_mb=50 * GIB)], pool)
    p = plan(stores, pool, REPLICA_MB)
    a, b = p.usage["ds-a"], p.usage["ds-b"]
    assert (a.real_used_before_mb, a.real_used_after_mb) == (50 * GIB, 46 * GIB)
    assert (b.real_used_before_mb, b.real_used_after_mb) == (50 * GIB, 54 * GIB)
    assert (a.committed_before_mb, a.committed_after_mb) == (40 * GIB, 20 * GIB)
    assert (b.committed_before_mb, b.committed_after_mb) == (0, 20 * GIB)
    assert a.overcommit_limit_mb == 400 * GIB
    assert plan([ds("ds-u", overcommit=0)], [], {}).usage["ds-u"].overcommit_limit_mb is None


def test_nothing_movable_means_no_moves():
    pool = desks("vd-", 3, "ds-a", movable=False)
    p = plan(holding([ds("ds-a"), ds("ds-b")], pool), pool, REPLICA_MB)
    assert p.moves == [] and p.targets == {"ds-a": 3, "ds-b": 0}


@pytest.mark.parametrize(
    "stores, pool",
    [
        ([ds("ds-a")], desks("vd-", 1, "ds-z")),  # unknown datastore
        ([ds("ds-a"), ds("ds-a")], []),  # duplicate datastore
        ([ds("ds-a")], desks("vd-", 1, "ds-a") * 2),  # duplicate desktop
        ([ds("ds-a")], desks("vd-", 1, "ds-a", version="v9")),  # no replica size
        ([ds("ds-a")], desks("vd-", 1, "ds-a", real_mb=0)),
    ],
)
def test_bad_input_is_refused(stores, pool):
    with pytest.raises(ValueError):
        plan(stores, pool, REPLICA_MB)


# --- properties -----------------------------------------------------------------------------

VERSIONS = ["v1", "v2", "v3"]


@st.composite
def pools(draw):
    """A few datastores (some deselected, some over a limit) and a pool of up to 40 desktops,
    sized so that slots are scarce often enough to exercise every limit."""
    n_ds = draw(st.integers(1, 6))
    versions = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=3, unique=True))
    replica_mb = {v: draw(st.integers(1, 3000)) for v in VERSIONS}
    shapes = st.tuples(
        st.integers(0, n_ds - 1),  # datastore
        st.sampled_from(versions),
        st.sampled_from([1024, 2048, 4096]),  # disk_mb
        st.integers(100, 2000),  # real_mb
        st.sampled_from([True, True, True, False]),  # movable
    )
    desktops = [
        PlanDesktop(f"vd-{i:03}", f"ds-{where}", version, disk, real, movable)
        for i, (where, version, disk, real, movable) in enumerate(
            draw(st.lists(shapes, max_size=40))
        )
    ]
    own_disk = Counter()
    for d in desktops:
        own_disk[d.datastore] += d.disk_mb
    datastores = []
    for i in range(n_ds):
        name = f"ds-{i}"
        capacity = draw(st.sampled_from([4_000, 20_000, 50_000, 120_000]) | st.integers(1, 120_000))
        factor = draw(st.sampled_from([0, 1, 4, 7, 15]))
        # Other pools' clones: often none, sometimes past the limit already.
        others = draw(st.integers(0, 0) | st.integers(0, capacity * max(factor, 1) + 5000))
        datastores.append(
            PlanDatastore(
                name=name,
                capacity_mb=capacity,
                free_mb=capacity * draw(st.sampled_from([0, 1, 3, 6, 10])) // 10
                + draw(st.integers(-100, 500)),
                overcommit=factor,
                committed_mb=own_disk[name] + others,
                selected=draw(st.sampled_from([True, True, False])),
                replicas=frozenset(draw(st.sets(st.sampled_from(VERSIONS)))),
            )
        )
    return datastores, desktops, replica_mb


def reference_slots(datastores, desktops, replica_mb):
    """The planner docstring's definition of slots, computed the long way."""
    movable = [d for d in desktops if d.movable]
    versions = {d.image_version for d in desktops}
    result = {}
    for x in datastores:
        fixed = sum(1 for d in desktops if d.datastore == x.name and not d.movable)
        if not x.selected or not movable:
            result[x.name] = fixed
            continue
        mine = [d for d in movable if d.datastore == x.name]
        space = (
            x.free_mb
            + sum(d.real_mb for d in mine)
            - sum(replica_mb[v] for v in versions if v not in x.replicas)
        )
        n = space // max(d.real_mb for d in movable)
        if x.overcommit:
            commit = x.capacity_mb * x.overcommit - x.committed_mb + sum(d.disk_mb for d in mine)
            n = min(n, commit // max(d.disk_mb for d in movable))
        result[x.name] = fixed + max(0, n)
    return result


def floors(datastores, desktops):
    fixed = Counter(d.datastore for d in desktops if not d.movable)
    return {x.name: fixed[x.name] for x in datastores}


PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(pools())
def test_property_never_plans_past_a_limit(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    after, _ = apply(datastores, desktops, p, replica_mb)
    receiving = {m.target for m in p.moves}
    for before, x in zip(datastores, after, strict=True):
        usage = p.usage[x.name]
        assert usage.real_used_after_mb == x.capacity_mb - x.free_mb
        assert usage.committed_after_mb == x.committed_mb
        if x.name not in receiving:
            continue
        assert x.free_mb >= 0  # real free space, replicas included
        if x.overcommit:
            assert x.committed_mb <= x.capacity_mb * x.overcommit
        # Already over a limit before planning: it must not have received anything.
        assert before.free_mb >= 0
        assert (
            not before.overcommit or before.committed_mb <= before.capacity_mb * before.overcommit
        )


@PROPERTY
@given(pools())
def test_property_no_desktop_lost_or_duplicated(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    where = {d.name: d.datastore for d in desktops}
    movable = {d.name for d in desktops if d.movable}
    moved = [m.desktop for m in p.moves]
    assert len(moved) == len(set(moved))
    for m in p.moves:
        assert m.desktop in movable
        assert m.source == where[m.desktop] != m.target
    _, after = apply(datastores, desktops, p, replica_mb)
    assert sorted(d.name for d in after) == sorted(where)
    names = {x.name for x in datastores}
    assert all(d.datastore in names for d in after)
    assert counts(after) == Counter({n: t for n, t in p.targets.items() if t})


@PROPERTY
@given(pools())
def test_property_deselected_datastores_are_vacated_when_slots_allow(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    _, after = apply(datastores, desktops, p, replica_mb)
    deselected = {x.name for x in datastores if not x.selected}
    left = {d.name for d in after if d.datastore in deselected}
    assert set(p.unplaced) == left and set(p.reasons) == left
    assert p.unplaced == sorted(p.unplaced)
    for d in desktops:
        if d.name in left:
            assert p.reasons[d.name] == (NO_ROOM if d.movable else NOT_MOVABLE)
    # Movable desktops stay behind only for want of free slots on the selected datastores.
    room = reference_slots(datastores, desktops, replica_mb)
    now = counts(desktops)
    spare = sum(max(0, room[x.name] - now[x.name]) for x in datastores if x.selected)
    leaving = sum(1 for d in desktops if d.movable and d.datastore in deselected)
    stuck = sum(1 for d in after if d.movable and d.datastore in deselected)
    assert stuck == max(0, leaving - spare)


@PROPERTY
@given(pools())
def test_property_targets_spread_in_proportion_to_slots(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    room = reference_slots(datastores, desktops, replica_mb)
    assert slots(datastores, desktops, replica_mb) == room
    floor = floors(datastores, desktops)
    now = counts(desktops)
    t = p.targets
    assert sum(t.values()) == len(desktops)
    for x in datastores:
        assert t[x.name] >= floor[x.name]
        if t[x.name] > now[x.name]:  # receives: only into free slots of a selected datastore
            assert x.selected and t[x.name] <= room[x.name]
    selected = [x.name for x in datastores if x.selected]
    # No desktop could move from b to a and leave the pair more even: after such a move a
    # would be at least as full (as a fraction of its slots) as b was.
    for a in selected:
        for b in selected:
            if a != b and t[a] < room[a] and t[b] > floor[b]:
                assert (t[a] + 1) * room[b] >= t[b] * room[a]
    # Hence any two that could each give and take are each within one desktop of their
    # proportional share of the pair's desktops.
    free = [n for n in selected if floor[n] < t[n] < room[n]]
    for a in free:
        for b in free:
            pair, share_a = t[a] + t[b], room[a] + room[b]
            assert abs(t[a] * share_a - pair * room[a]) < share_a


def lower_bound(datastores, desktops, targets):
    """Fewest moves that reach the targets: each datastore must send the movable desktops it
    holds beyond what its target leaves for them once its unmovable desktops are counted."""
    movable = Counter(d.datastore for d in desktops if d.movable)
    fixed = floors(datastores, desktops)
    return sum(max(0, movable[x.name] - (targets[x.name] - fixed[x.name])) for x in datastores)


@PROPERTY
@given(pools())
def test_property_fewest_moves(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    assert len(p.moves) == lower_bound(datastores, desktops, p.targets)
    now = counts(desktops)
    deselected = {x.name for x in datastores if not x.selected}
    for m in p.moves:
        assert now[m.source] > p.targets[m.source] or m.source in deselected
        assert now[m.target] < p.targets[m.target]


@PROPERTY
@given(pools())
def test_property_planning_again_after_the_plan_moves_nothing(case):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    stores_after, desktops_after = apply(datastores, desktops, p, replica_mb)
    assert slots(stores_after, desktops_after, replica_mb) == slots(
        datastores, desktops, replica_mb
    )
    again = plan(stores_after, desktops_after, replica_mb)
    assert again.moves == [] and again.replicas_needed == []
    assert again.targets == p.targets
    assert again.unplaced == p.unplaced


@PROPERTY
@given(pools(), st.randoms(use_true_random=False))
def test_property_same_input_in_any_order_gives_the_same_plan(case, rnd):
    datastores, desktops, replica_mb = case
    p = plan(datastores, desktops, replica_mb)
    shuffled_stores, shuffled_desktops = list(datastores), list(desktops)
    rnd.shuffle(shuffled_stores)
    rnd.shuffle(shuffled_desktops)
    assert plan(shuffled_stores, shuffled_desktops, replica_mb) == p
