"""Clone with history: export a repo, import it on the same pool and on another pool,
with identical ids, log and files; damaged files leave nothing behind. Real btrfs."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.errors import Conflict, InvalidRequest
from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.transfer import export_repo, import_repo
from pfs_volume.volumes import VolumeService


def files_of(repos: RepoService, repo: str, commit: str) -> dict[str, bytes]:
    root = repos.commit_path(repo, commit)
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def history(volumes: VolumeService, repos: RepoService) -> RepoService:
    """master: 3 commits; dev branched from the 2nd with one of its own; one pruned."""
    for n, files in enumerate([{"a": b"1"}, {"b": os.urandom(300_000)}, {"a": b"changed"}]):
        path = volumes.mount("pfs/r", f"m{n}")
        for name, data in files.items():
            (path / name).write_bytes(data)
        volumes.unmount("pfs/r", f"m{n}")
    repos.create_branch("r", "dev", parse_ref("master~1"))
    path = volumes.mount("pfs/r/dev", "d1")
    (path / "dev.txt").write_text("dev")
    (path / "b").unlink()
    volumes.unmount("pfs/r/dev", "d1")
    repos.gc("r", keep_last=0)  # prunes the first master commit only: the rest are heads or
    return repos  # ... parents? no: only heads are kept


@pytest.fixture
def other_pool(tmp_path: Path) -> Iterator[RepoService]:
    root, image = prepare_pool(tmp_path / "other", 512 * 1024**2)
    assert image is not None
    store = SqliteStore(root / "meta.db")
    try:
        yield RepoService(store, BtrfsPool(root))
    finally:
        store.close()
        image.unmount()


def export_bytes(repos: RepoService, name: str) -> bytes:
    return b"".join(export_repo(repos, name))


def same_history(a: RepoService, b: RepoService, name_a: str, name_b: str) -> None:
    for branch in ("master", "dev"):
        log_a = a.log(name_a, parse_ref(branch))
        log_b = b.log(name_b, parse_ref(branch))
        assert [(c.id, c.parent, c.message, c.created, c.pruned) for c in log_a] == [
            (c.id, c.parent, c.message, c.created, c.pruned) for c in log_b
        ]
        for commit in log_a:
            if not commit.pruned:
                assert files_of(a, name_a, commit.id) == files_of(b, name_b, commit.id)
                assert b.pool.info(b.commit_path(name_b, commit.id)).readonly


def test_export_then_import_on_another_pool(history: RepoService, other_pool: RepoService) -> None:
    data = export_bytes(history, "r")
    import_repo(other_pool, io.BytesIO(data))
    same_history(history, other_pool, "r", "r")
    assert other_pool.get_repo("r").created == history.get_repo("r").created
    assert list(other_pool.incoming_dir.iterdir()) == []


def test_import_as_another_name_on_the_same_pool(
    history: RepoService, volumes: VolumeService
) -> None:
    import_repo(history, io.BytesIO(export_bytes(history, "r")), "copy")
    same_history(history, history, "r", "copy")
    path = volumes.mount("pfs/copy/dev", "m")
    assert sorted(p.name for p in path.iterdir()) == ["a", "dev.txt"]
    volumes.unmount("pfs/copy/dev", "m")
    with pytest.raises(Conflict, match="exists already"):
        import_repo(history, io.BytesIO(export_bytes(history, "r")), "copy")


@pytest.mark.parametrize("cut", [5, 200, -100, -9])
def test_damaged_files_leave_nothing(
    history: RepoService, other_pool: RepoService, cut: int
) -> None:
    data = export_bytes(history, "r")
    with pytest.raises(InvalidRequest):
        import_repo(other_pool, io.BytesIO(data[:cut]))
    assert other_pool.list_repos() == []
    assert list(other_pool.incoming_dir.iterdir()) == []
    assert list(other_pool.repos_dir.iterdir()) == []


def test_not_an_export_file(other_pool: RepoService) -> None:
    with pytest.raises(InvalidRequest, match="not a pfs export file"):
        import_repo(other_pool, io.BytesIO(b"hello"))


def test_an_import_interrupted_after_its_rename_is_undone(
    history: RepoService, other_pool: RepoService
) -> None:
    from pfs_volume.transfer import IMPORT_MARKER, recover_imports

    import_repo(other_pool, io.BytesIO(export_bytes(history, "r")), "done")
    leftover = other_pool.repo_dir("half")
    (leftover / "commits").mkdir(parents=True)
    other_pool.pool.snapshot(
        other_pool.commit_path("done", other_pool.get_branch("done", "master").head or ""),
        leftover / "commits" / "x",
        readonly=True,
    )
    (leftover / IMPORT_MARKER).touch()
    assert recover_imports(other_pool) == ["half"]
    assert not leftover.exists()
    assert (
        other_pool.repo_exists("done")
        and not (other_pool.repo_dir("done") / IMPORT_MARKER).exists()
    )
