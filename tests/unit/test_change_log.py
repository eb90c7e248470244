"""ChangeLog (which repos and volume names each write touched) against a plain list of
every write, and the pool's paths of its changes and their repos, on real btrfs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.btrfs.pool import CHANGED_PATHS
from pfs_volume.meta.change_log import BRANCH, COMMIT, COPY, SNAPSHOT, ChangeLog, Part, Since
from pfs_volume.repos.layout import PoolLayout

NAMES = st.frozensets(st.sampled_from(["a", "b", "c", "d"]), max_size=3)
PARTS = st.frozensets(
    st.tuples(
        st.sampled_from(["a", "b"]), st.sampled_from([BRANCH, COMMIT]), st.sampled_from("xy")
    ),
    max_size=3,
)
WRITE = st.tuples(NAMES, NAMES, st.integers(0, 9).map(lambda n: n == 0), PARTS)
Write = tuple[frozenset[str], frozenset[str], bool, frozenset[Part]]


@given(writes=st.lists(WRITE, max_size=40))
def test_since_is_the_union_of_the_writes_after(writes: list[Write]) -> None:
    log = ChangeLog()
    for repos, volumes, everything, parts in writes:
        log.note(repos, volumes, everything, parts)
    assert log.number == len(writes)
    for number in range(len(writes) + 2):
        later = writes[number:]
        expected: Since
        if number > len(writes) or any(write[2] for write in later):
            expected = (None, None, None)
        else:
            expected = (
                frozenset().union(*(write[0] for write in later)),
                frozenset().union(*(write[1] for write in later)),
                frozenset().union(*(write[3] for write in later)),
            )
        assert log.since(number) == expected, number


def test_a_cursor_of_another_log_means_anything() -> None:
    first, second = ChangeLog(), ChangeLog()
    first.note(["a"])
    second.note(["a"])
    cursor = first.changes(None).cursor
    assert first.changes(cursor).repos == frozenset()
    assert second.changes(cursor).repos is None
    assert second.changes(None).volumes is None


def test_the_pool_names_the_paths_it_changed(pool: BtrfsPool) -> None:
    start, _ = pool.changed_paths(-1)
    assert pool.changed_paths(start) == (start, [])
    made, copy, moved = pool.root / "x", pool.root / "y", pool.root / "z"
    pool.create_subvolume(made)
    pool.snapshot(made, copy, readonly=False)
    pool.move(copy, moved)
    pool.delete_subvolume(made)
    assert pool.changed_paths(start) == (start + 4, [made, copy, copy, moved, made])
    assert pool.changed_paths(start + 3) == (start + 4, [made])
    assert pool.changed_paths(start + 5)[1] is None, "a count not given yet"


def test_the_pool_forgets_paths_beyond_its_history(pool: BtrfsPool) -> None:
    start, _ = pool.changed_paths(-1)
    pool.create_subvolume(pool.root / "x")
    for n in range(CHANGED_PATHS):
        pool.move(
            pool.root / ("x" if n % 2 == 0 else "y"), pool.root / ("y" if n % 2 == 0 else "x")
        )
    assert pool.changed_paths(start)[1] is None
    assert pool.changed_paths(start + 1)[1] is not None


def test_paths_map_to_the_working_copies_snapshots_and_repos_they_are(tmp_path: Path) -> None:
    layout = PoolLayout(tmp_path)
    repos = tmp_path / "repos"
    assert layout.parts_at([]) == (frozenset(), frozenset())
    assert layout.parts_at([repos / "a" / "branches" / "m", repos / "b"]) == (
        {"b"},
        {("a", COPY, "m")},
    )
    assert layout.parts_at([repos / "a" / "commits" / "c1"]) == (set(), {("a", SNAPSHOT, "c1")})
    # Anything else in a repo's folder is the whole repo: its folders, a set-aside copy,
    # something below a working copy's place.
    for inside in ("", "branches", "commits", "detached/m.c1.x", "branches/m/deeper"):
        assert layout.parts_at([repos / "a" / inside]) == ({"a"}, set()), inside
    assert layout.parts_at([tmp_path / "incoming" / "x", tmp_path / "retired" / "a"]) == (
        set(),
        set(),
    )
    assert layout.parts_at([repos]) is None
    assert layout.parts_at([tmp_path]) is None


@given(writes=st.lists(WRITE, max_size=40), limit=st.integers(1, 4))
def test_a_log_that_forgets_names_never_answers_wrong(writes: list[Write], limit: int) -> None:
    """Memory stays bounded for a daemon that sees ever new names (a volume per CI job):
    past ``limit`` names the oldest are forgotten, and ``since`` answers None for the
    numbers whose answer would have needed them, the right answer for the rest."""
    log, whole = ChangeLog(limit), ChangeLog()
    for repos, volumes, everything, parts in writes:
        log.note(repos, volumes, everything, parts)
        whole.note(repos, volumes, everything, parts)
        assert len(log._repos) <= limit and len(log._volumes) <= limit
        assert len(log._parts) <= limit
    for number in range(len(writes) + 2):
        found, exact = log.since(number), whole.since(number)
        assert found == (None, None, None) or covers(found, exact), number
    assert log.since(len(writes)) == whole.since(len(writes))


def covers(found: Since, exact: Since) -> bool:
    """``found`` names all that ``exact`` does: the same volume names, the repos, and
    each part or its whole repo (a forgotten part stands for its repo)."""
    repos, volumes, parts = found
    whole_repos, whole_volumes, whole_parts = exact
    assert repos is not None and whole_repos is not None and whole_parts is not None
    assert parts is not None
    return (
        volumes == whole_volumes
        and whole_repos <= repos
        and all(p in parts or p[0] in repos for p in whole_parts)
    )


def test_a_forgotten_part_stands_for_its_repo() -> None:
    log = ChangeLog(limit=2)
    log.note(parts=[("a", COMMIT, "c1")])
    log.note(parts=[("a", COMMIT, "c2"), ("b", BRANCH, "m"), ("b", BRANCH, "n")])
    kept = frozenset({("b", BRANCH, "m"), ("b", BRANCH, "n")})
    # a's two commits were forgotten: a stands for them, as a whole repo
    assert log.since(0) == (frozenset({"a"}), frozenset(), kept)
    assert log.since(1) == (frozenset({"a"}), frozenset(), kept)
    assert log.since(2) == (frozenset(), frozenset(), frozenset())
