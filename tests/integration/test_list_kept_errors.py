"""List's kept answer (``volumes/kept_listing.py``) never keeps a mountpoint that a
passing failure (the store or the pool unreachable for a moment) made empty: the next
List works it out again, as a whole listing would."""

from __future__ import annotations

from pfs_volume.errors import Unavailable
from pfs_volume.meta import SqliteStore, VolumeRecord, utcnow
from pfs_volume.volumes import VolumeService
from pfs_volume.volumes.kept_listing import NAMES_ONE_BY_ONE
from pfs_volume.volumes.listing import volume_infos


def answer(volumes: VolumeService) -> dict[str, str]:
    return {v.name: v.mountpoint for v in volumes.list()}


def whole(volumes: VolumeService) -> dict[str, str]:
    return {v.name: v.mountpoint for v in volume_infos(volumes.repos, volumes.store, "pfs")}


def test_a_failed_read_is_not_kept(volumes: VolumeService, store: SqliteStore) -> None:
    volumes.create("a", {})
    volumes.create("b", {})
    path = volumes.mount("b", "m1")
    (path / "data").write_text("one")
    assert answer(volumes) == whole(volumes)
    assert whole(volumes)["b"]
    read = store.list_branches
    failed: list[str] = []

    def once(repo: str) -> object:
        if repo == "b" and not failed:
            failed.append(repo)
            raise Unavailable("etcd cannot be reached now")
        return read(repo)

    store.list_branches = once  # type: ignore[method-assign]
    volumes.unmount("b", "m1")  # a write to b: List works b out again
    answer(volumes)  # b's read fails: b shows "" for this List
    assert failed
    assert answer(volumes) == whole(volumes)  # but not for the next
    assert volumes.listing.last.resolved == 1  # b alone was worked out again
    assert answer(volumes) == whole(volumes)
    assert volumes.listing.last.resolved == 0  # and then kept


def test_a_failed_read_in_a_whole_listing_is_not_kept(
    volumes: VolumeService, store: SqliteStore
) -> None:
    volumes.create("a", {})
    path = volumes.mount("a", "m1")
    (path / "data").write_text("one")
    volumes.unmount("a", "m1")
    head = volumes.repos.get_branch("a", "master").head
    assert head is not None
    volumes.create(f"a@{head[:8]}", {})
    read = store.count_commits
    failed: list[str] = []

    def once(repo: str) -> int:
        if not failed:
            failed.append(repo)
            raise Unavailable("etcd cannot be reached now")
        return read(repo)

    store.count_commits = once  # type: ignore[method-assign]
    answer(volumes)
    assert failed
    assert answer(volumes) == whole(volumes)


def test_many_names_changed_at_once_are_read_in_one(
    volumes: VolumeService, store: SqliteStore
) -> None:
    """A repo deleted with many volume names (on etcd each name read alone is a round
    trip): List reads the names in one request, and is still right."""
    volumes.create("r", {})
    for number in range(200):
        store.add_volume(VolumeRecord(f"r/b{number}", "r", utcnow()))
    volumes.create("s", {})
    assert answer(volumes) == whole(volumes)
    read = store.get_volume
    reads: list[str] = []

    def counted(name: str) -> object:
        reads.append(name)
        return read(name)

    store.get_volume = counted  # type: ignore[method-assign]
    volumes.repos.delete_repo("r")
    assert answer(volumes) == whole(volumes) == {"s": whole(volumes)["s"]}
    assert len(reads) <= NAMES_ONE_BY_ONE
    volumes.remove("s")
    assert answer(volumes) == whole(volumes) == {}
    assert reads == ["s"]
