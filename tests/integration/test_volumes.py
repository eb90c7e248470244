"""VolumeService on a real btrfs pool and a real SQLite store: what Docker's calls do."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pfs_volume.errors import Conflict, InUse, InvalidName, InvalidRequest, NotFound, PfsError
from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService

ids = itertools.count()


def mid() -> str:
    return f"mount{next(ids)}"


def heads(repos: RepoService, repo: str) -> dict[str, str | None]:
    return {b.name: b.head for b in repos.list_branches(repo)}


def state(store: SqliteStore) -> tuple[object, ...]:
    """Everything the store holds, to show that a refused request changed nothing."""
    return (
        store.list_repos(),
        [store.list_branches(r.name) for r in store.list_repos()],
        [store.count_commits(r.name) for r in store.list_repos()],
        store.list_mounts(),
        store.list_volumes(),
        store.list_intents(),
    )


def write(path: Path, name: str, text: str) -> None:
    (path / name).write_text(text)


def test_last_unmount_commits_what_changed(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    path = volumes.mount("pfs/photos@master", m)
    write(path, "a", "hi")
    volumes.unmount("pfs/photos@master", m)
    [commit] = repos.log("photos", repos_ref("master"))
    assert commit.parent is None and commit.branch == "master" and commit.origin == "unmount"
    assert m in commit.message
    snapshot = repos.commit_path("photos", commit.id)
    assert (snapshot / "a").read_text() == "hi"
    assert repos.pool.info(snapshot).readonly
    assert volumes.store.list_mounts() == []


def repos_ref(text: str):  # type: ignore[no-untyped-def]
    from pfs_volume.names import parse_ref

    return parse_ref(text)


def test_read_only_use_makes_no_commit_and_deletion_does(
    volumes: VolumeService, repos: RepoService
) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "x")
    volumes.unmount("pfs/r", m)
    m = mid()
    path = volumes.mount("pfs/r", m)
    assert (path / "a").read_text() == "x"
    volumes.unmount("pfs/r", m)
    assert repos.store.count_commits("r") == 1
    m = mid()
    (volumes.mount("pfs/r", m) / "a").unlink()
    volumes.unmount("pfs/r", m)
    log = repos.log("r", repos_ref("master"))
    assert len(log) == 2
    assert not (repos.commit_path("r", log[0].id) / "a").exists()
    assert (repos.commit_path("r", log[1].id) / "a").exists()


def test_new_repo_mounted_and_left_empty_makes_no_commit(
    volumes: VolumeService, repos: RepoService
) -> None:
    m = mid()
    volumes.mount("pfs/empty", m)
    volumes.unmount("pfs/empty", m)
    assert repos.store.count_commits("empty") == 0
    assert heads(repos, "empty") == {"master": None}


def test_concurrent_mounts_share_one_working_copy_and_commit_once(
    volumes: VolumeService, repos: RepoService
) -> None:
    first, second = mid(), mid()
    p1 = volumes.mount("pfs/r@master", first)
    p2 = volumes.mount("r", second)
    assert p1 == p2
    write(p1, "one", "1")
    volumes.unmount("pfs/r@master", first)
    assert repos.store.count_commits("r") == 0
    assert volumes.get("pfs/r").status["mounts"] == 1
    write(p2, "two", "2")
    volumes.unmount("r", second)
    [commit] = repos.log("r", repos_ref("master"))
    snap = repos.commit_path("r", commit.id)
    assert (snap / "one").exists() and (snap / "two").exists()


def test_mount_ids_are_counted(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    assert volumes.mount("pfs/r", m) == volumes.mount("pfs/r", m)
    assert len(volumes.store.list_mounts()) == 1
    write(volumes.mount("pfs/r", m), "f", "x")
    volumes.unmount("pfs/r", m)
    volumes.unmount("pfs/r", m)
    assert repos.store.count_commits("r") == 0
    volumes.unmount("pfs/r", m)
    volumes.unmount("pfs/r", m)  # a repeated Unmount changes nothing
    assert repos.store.count_commits("r") == 1
    assert volumes.store.list_mounts() == []
    with pytest.raises(InvalidRequest, match="already used"):
        other = mid()
        volumes.mount("pfs/r", other)
        volumes.mount("pfs/s", other)


def test_docker_cp_of_a_running_container_keeps_its_mount(
    volumes: VolumeService, repos: RepoService
) -> None:
    """``docker cp`` mounts a running container's volume again with the container's own
    mount ID and unmounts it after: the container's mount stays, and its later writes are
    committed by its own Unmount. (pfs releases every use at once when told to.)"""
    m = mid()
    path = volumes.mount("pfs/cp", m)
    write(path, "before", "1")
    volumes.mount("pfs/cp", m)  # docker cp
    volumes.unmount("pfs/cp", m)
    assert [r.id for r in volumes.store.list_mounts()] == [m]
    assert repos.store.count_commits("cp") == 0
    write(path, "after", "2")
    volumes.unmount("pfs/cp", m)  # the container stops
    [commit] = repos.log("cp", repos_ref("master"))
    snapshot = repos.commit_path("cp", commit.id)
    assert sorted(p.name for p in snapshot.iterdir()) == ["after", "before"]
    other = mid()
    volumes.mount("pfs/cp", other)
    volumes.mount("pfs/cp", other)
    volumes.release(other)
    assert volumes.store.list_mounts() == []


def test_commit_mount_is_read_only_snapshot(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "v1")
    volumes.unmount("pfs/r", m)
    [c1] = repos.log("r", repos_ref("master"))
    for name in (f"pfs/r@{c1.id}", f"pfs/r@{c1.id[:6]}", "pfs/r@master~0"):
        ro = mid()
        path = volumes.mount(name, ro)
        assert path == repos.commit_path("r", c1.id)
        assert (path / "a").read_text() == "v1"
        with pytest.raises(OSError):
            write(path, "b", "x")
        info = volumes.get(name)
        assert info.status["writable"] is False and info.status["commit"] == c1.id
        volumes.unmount(name, ro)
    assert repos.store.count_commits("r") == 1


def test_branch_from_commit_leaves_master_alone(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "v1")
    volumes.unmount("pfs/r", m)
    c1 = repos.get_branch("r", "master").head
    assert c1 is not None
    m = mid()
    path = volumes.mount(f"pfs/r/feature@{c1[:8]}", m)
    assert (path / "a").read_text() == "v1"
    write(path, "b", "feature")
    volumes.unmount(f"pfs/r/feature@{c1[:8]}", m)
    feature = repos.get_branch("r", "feature")
    assert repos.get_commit("r", feature.head or "").parent == c1
    assert repos.get_branch("r", "master").head == c1
    with pytest.raises(Conflict, match="exists with head"):
        volumes.mount(f"pfs/r/feature@{c1}", mid())
    m = mid()
    assert (volumes.mount("pfs/r/feature", m) / "b").exists()
    volumes.unmount("pfs/r/feature", m)


def test_new_branch_starts_at_master_head(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "v1")
    volumes.unmount("pfs/r", m)
    m = mid()
    assert (volumes.mount("pfs/r/dev", m) / "a").read_text() == "v1"
    volumes.unmount("pfs/r/dev", m)
    assert repos.get_branch("r", "dev").head == repos.get_branch("r", "master").head


def test_branch_name_wins_over_commit_prefix(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "v1")
    volumes.unmount("pfs/r", m)
    c1 = repos.get_branch("r", "master").head or ""
    m = mid()
    volumes.mount(f"pfs/r/{c1[:6]}", m)
    volumes.unmount(f"pfs/r/{c1[:6]}", m)
    target = volumes.resolve(f"pfs/r@{c1[:6]}")
    assert target.writable and target.branch == c1[:6]


def test_ambiguous_prefix_is_refused(store: SqliteStore, pool) -> None:  # type: ignore[no-untyped-def]
    fixed = iter(["abcdef" + "0" * 26, "abcdef" + "1" * 26])
    repos = RepoService(store, pool, new_id=lambda: next(fixed))
    volumes = VolumeService(repos, store, prefix="pfs")
    for text in ("one", "two"):
        m = mid()
        write(volumes.mount("pfs/r", m), "f", text)
        volumes.unmount("pfs/r", m)
    before = state(store)
    with pytest.raises(InvalidName, match="ambiguous"):
        volumes.mount("pfs/r@abcdef", mid())
    assert volumes.resolve("pfs/r@abcdef1").commit == "abcdef" + "1" * 26
    assert state(store) == before


@pytest.mark.parametrize(
    ("name", "error", "says"),
    [
        ("pfs/../x", InvalidName, "must start with a letter or digit"),
        ("pfs/a@", InvalidName, "nothing follows '@'"),
        ("pfs/" + "a" * 300, InvalidName, "at most 255"),
        ("pfs/r@nosuchcommit", NotFound, "no branch or commit 'nosuchcommit'"),
        ("pfs/r@abcdef", NotFound, "no branch or commit 'abcdef'"),
        ("pfs/r@master~5", NotFound, "has no parent"),
        ("pfs/nope@abcdef", NotFound, "there is no repo 'nope'"),
        ("pfs/nope@dev", NotFound, "there is no repo 'nope'"),
        ("pfs/phötos", InvalidName, "'ö'"),
        ("", InvalidName, "empty"),
    ],
)
def test_bad_names_change_nothing(
    volumes: VolumeService, store: SqliteStore, name: str, error: type[PfsError], says: str
) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "x")
    volumes.unmount("pfs/r", m)
    before = state(store)
    for call in (lambda: volumes.mount(name, mid()), lambda: volumes.create(name, {})):
        with pytest.raises(error) as caught:
            call()
        assert says in str(caught.value)
    # Get claims only names under the prefix; others must be NotFound for Docker's probe.
    with pytest.raises(error if name.startswith("pfs/") else NotFound):
        volumes.get(name)
    assert state(store) == before


def test_get_claims_and_creates_names_under_the_prefix_only(
    volumes: VolumeService, store: SqliteStore
) -> None:
    # Docker calls Get before Create and skips Create when Get answers.
    info = volumes.get("pfs/newrepo")
    assert info.status["repo"] == "newrepo" and info.mountpoint
    assert store.get_repo("newrepo") is not None
    assert [v.name for v in volumes.list()] == ["pfs/newrepo"]
    with pytest.raises(NotFound, match="no pfs volume"):
        volumes.get("someoneelses")
    assert store.get_repo("someoneelses") is None
    volumes.create("mine", {})
    assert volumes.get("mine").status["repo"] == "mine"
    assert store.get_repo("mine") is not None


def test_create_refuses_options(volumes: VolumeService, store: SqliteStore) -> None:
    with pytest.raises(InvalidRequest, match="take no options"):
        volumes.create("pfs/r", {"size": "1G"})
    assert store.list_repos() == [] and store.list_volumes() == []


def test_remove_forgets_the_name_but_keeps_data(volumes: VolumeService, repos: RepoService) -> None:
    volumes.create("pfs/r", {})
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "x")
    with pytest.raises(InUse):
        volumes.remove("pfs/r")
    volumes.unmount("pfs/r", m)
    assert [v.name for v in volumes.list()] == ["pfs/r"]
    volumes.remove("pfs/r")
    assert volumes.list() == ()
    assert repos.store.count_commits("r") == 1
    assert (repos.branch_path("r", "master") / "a").exists()


def test_mount_records_survive_a_restart(volumes: VolumeService, store: SqliteStore, pool) -> None:  # type: ignore[no-untyped-def]
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "before restart")
    store.close()
    reopened = SqliteStore(pool.root / "meta.db")
    try:
        repos = RepoService(reopened, pool)
        assert repos.recover().redone == []
        again = VolumeService(repos, reopened, prefix="pfs")
        assert again.get("pfs/r").status["mount_ids"] == [m]
        again.unmount("pfs/r", m)
        [commit] = repos.log("r", repos_ref("master"))
        assert (repos.commit_path("r", commit.id) / "a").read_text() == "before restart"
    finally:
        reopened.close()


def test_delete_repo_refused_while_mounted(volumes: VolumeService, repos: RepoService) -> None:
    m = mid()
    write(volumes.mount("pfs/r", m), "a", "x")
    with pytest.raises(InUse, match="stop them first"):
        repos.delete_repo("r")
    assert (repos.branch_path("r", "master") / "a").exists()
    volumes.unmount("pfs/r", m)
    repos.delete_repo("r")
    assert not repos.repo_dir("r").exists()
    assert repos.store.get_repo("r") is None
    with pytest.raises(NotFound):
        repos.delete_repo("r")


def test_an_unmount_of_a_mount_released_too_early_commits_what_was_written_since(
    volumes: VolumeService, repos: RepoService
) -> None:
    """Docker shows no mount IDs: a ``docker cp`` into a stopped container that takes
    longer than the grace (or a container that starts that slowly) has its mount released
    by reconciliation while it still writes. Its Unmount comes all the same, later: what
    was written since is committed then, not left behind with no record to commit it."""
    from pfs_volume.mount_reconciler import ContainerMount, MountReconciler

    class Engine:
        def volume_mounts(self) -> list[ContainerMount]:
            return [ContainerMount("copied-into", "exited", "pfs/slow")]

    m = mid()
    path = volumes.mount("pfs/slow", m)
    write(path, "first", "1")
    assert MountReconciler(volumes, Engine(), grace=0).run_once().released == (m,)
    assert repos.store.count_commits("slow") == 1
    write(path, "second", "2")
    volumes.unmount("pfs/slow", m)
    commit = repos.log("slow", repos_ref("master"))[0]
    assert "released before" in commit.message
    assert sorted(p.name for p in repos.commit_path("slow", commit.id).iterdir()) == [
        "first",
        "second",
    ]
    volumes.unmount("pfs/slow", m)  # repeated: nothing more to commit
    assert repos.store.count_commits("slow") == 2
