"""Which mount records no container holds (pure): properties over random records and
container listings, and the cases the reconciler exists for."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.meta import MountRecord
from pfs_volume.mount_reconciler import HOLDING_STATES, ContainerMount, stale_mounts

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=30)
VOLUMES = ["pfs/a", "pfs/a@master", "pfs/b"]
STATES = [*sorted(HOLDING_STATES), "created", "exited", "dead", "removing"]


def record(n: int, volume: str, age: float) -> MountRecord:
    return MountRecord(
        id=f"m{n:03d}",
        volume=volume,
        repo=volume.split("/")[1].split("@")[0],
        branch="master",
        commit=None,
        created=NOW - timedelta(seconds=age),
    )


records_st = st.lists(
    st.tuples(st.sampled_from(VOLUMES), st.floats(min_value=0, max_value=120)), max_size=12
).map(lambda rows: [record(n, v, age) for n, (v, age) in enumerate(rows)])
mounts_st = st.lists(
    st.builds(
        ContainerMount,
        st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from(STATES),
        st.sampled_from(VOLUMES),
    ),
    max_size=8,
)


@given(records_st, mounts_st, st.randoms())
def test_a_release_is_never_held_and_never_order_dependent(
    records: list[MountRecord], mounts: list[ContainerMount], rng: random.Random
) -> None:
    stale = stale_mounts(records, mounts, NOW, GRACE)
    shuffled_records, shuffled_mounts = records[:], mounts[:]
    rng.shuffle(shuffled_records)
    rng.shuffle(shuffled_mounts)
    assert stale_mounts(shuffled_records, shuffled_mounts, NOW, GRACE) == stale
    assert stale == sorted(stale, key=lambda r: (r.created, r.id))
    for volume in VOLUMES:
        mine = [r for r in records if r.volume == volume]
        released = [r for r in stale if r.volume == volume]
        kept = [r for r in mine if r not in released]
        firm = sum(1 for m in mounts if m.volume == volume and m.state in HOLDING_STATES)
        anyone = sum(1 for m in mounts if m.volume == volume)
        # every running holder keeps one record; nobody at all keeps none
        assert len(kept) >= min(len(mine), firm)
        assert len(kept) <= anyone
        if anyone == 0:
            assert kept == []
        # the older records go first
        if released and kept:
            assert max(r.created for r in released) <= min(r.created for r in kept)
        # a record older than the grace is kept only by a running, paused or
        # restarting container
        old_kept = [r for r in kept if NOW - r.created >= GRACE]
        assert len(old_kept) <= firm


def test_the_record_a_killed_pfs_left_behind_is_released() -> None:
    """pfs died while Docker's Unmount waited: the container exited, its record stayed."""
    left = record(1, "pfs/a", age=300)
    assert stale_mounts([left], [ContainerMount("job", "exited", "pfs/a")], NOW, GRACE) == [left]
    assert stale_mounts([left], [], NOW, GRACE) == [left]


def test_a_container_being_started_keeps_its_new_record() -> None:
    """Docker calls Mount while the container is still 'created'."""
    new = record(1, "pfs/a", age=1)
    assert stale_mounts([new], [ContainerMount("job", "created", "pfs/a")], NOW, GRACE) == []
    assert stale_mounts([new], [], NOW, GRACE) == [new]


def test_one_running_container_keeps_one_of_two_records_the_newest() -> None:
    old, new = record(1, "pfs/a", age=600), record(2, "pfs/a", age=60)
    running = [ContainerMount("web", "running", "pfs/a")]
    assert stale_mounts([new, old], running, NOW, GRACE) == [old]


def test_names_are_matched_exactly() -> None:
    """pfs/a and pfs/a@master are two volumes, though one branch."""
    a = record(1, "pfs/a", age=600)
    assert stale_mounts([a], [ContainerMount("web", "running", "pfs/a@master")], NOW, GRACE) == [a]
