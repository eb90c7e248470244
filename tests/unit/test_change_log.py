"""ChangeLog (which repos and volume names each write touched) against a plain list of
every write, and the pool's paths of its changes and their repos, on real btrfs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.btrfs.pool import CHANGED_PATHS
from pfs_volume.meta.change_log import ChangeLog
from pfs_volume.repos.layout import PoolLayout

NAMES = st.frozensets(st.sampled_from(["a", "b", "c", "d"]), max_size=3)
WRITE = st.tuples(NAMES, NAMES, st.integers(0, 9).map(lambda n: n == 0))


@given(writes=st.lists(WRITE, max_size=40), data=st.data())
def test_since_is_the_union_of_the_writes_after(
    writes: list[tuple[frozenset[str], frozenset[str], bool]], data: st.DataObject
) -> None:
    log = ChangeLog()
    for repos, volumes, everything in writes:
        log.note(repos, volumes, everything)
    assert log.number == len(writes)
    for number in range(len(writes) + 2):
        later = writes[number:]
        expected: tuple[frozenset[str] | None, frozenset[str] | None]
        if number > len(writes) or any(everything for _, _, everything in later):
            expected = (None, None)
        else:
            expected = (
                frozenset().union(*(r for r, _, _ in later)),
                frozenset().union(*(v for _, v, _ in later)),
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


def test_paths_map_to_the_repo_whose_folder_holds_them(tmp_path: Path) -> None:
    layout = PoolLayout(tmp_path)
    repos = tmp_path / "repos"
    assert layout.repos_at([]) == frozenset()
    assert layout.repos_at([repos / "a" / "branches" / "m", repos / "b"]) == {"a", "b"}
    assert layout.repos_at([tmp_path / "incoming" / "x", tmp_path / "retired" / "a"]) == set()
    assert layout.repos_at([repos]) is None
    assert layout.repos_at([tmp_path]) is None


@given(writes=st.lists(WRITE, max_size=40), limit=st.integers(1, 4))
def test_a_log_that_forgets_names_never_answers_wrong(
    writes: list[tuple[frozenset[str], frozenset[str], bool]], limit: int
) -> None:
    """Memory stays bounded for a daemon that sees ever new names (a volume per CI job):
    past ``limit`` names the oldest are forgotten, and ``since`` answers None for the
    numbers whose answer would have needed them, the right answer for the rest."""
    log, whole = ChangeLog(limit), ChangeLog()
    for repos, volumes, everything in writes:
        log.note(repos, volumes, everything)
        whole.note(repos, volumes, everything)
        assert len(log._repos) <= limit and len(log._volumes) <= limit
    for number in range(len(writes) + 2):
        found = log.since(number)
        assert found == (None, None) or found == whole.since(number), number
    assert log.since(len(writes)) == whole.since(len(writes))


def test_new_volume_names_forever_keep_the_log_bounded() -> None:
    log = ChangeLog(limit=3)
    for number in range(10):
        log.note(volumes=(f"ci-{number}",))
    assert len(log._volumes) == 3
    assert log.since(6) == (None, None)  # ci-6 (write 7) was forgotten
    assert log.since(7) == (frozenset(), frozenset({"ci-7", "ci-8", "ci-9"}))
