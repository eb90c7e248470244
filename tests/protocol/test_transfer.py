"""Clone with history: export a repo, import it on the same pool and on another pool,
with identical ids, log and files; damaged files leave nothing behind. Real btrfs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import astuple, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.errors import Conflict, InvalidRequest
from pfs_volume.frames import encode_frames
from pfs_volume.meta import CommitIntent, CommitRecord, SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService, new_commit_id
from pfs_volume.transfer import MAGIC, export_repo, import_repo
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app


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
    # Every commit now has a twin; btrfs may build the next copy on either one.
    import_repo(history, io.BytesIO(export_bytes(history, "copy")), "copy2")
    same_history(history, history, "r", "copy2")


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


# Every field of every commit survives the round trip (issue 9)


def record_fields(commit: CommitRecord) -> tuple[object, ...]:
    """Everything a commit record says, but its repo and holders (which an import sets)."""
    return astuple(replace(commit, repo="", holders=()))


def write_merge_commit(repos: RepoService, repo: str, into: str, other: str) -> CommitRecord:
    """A merge commit of branch ``other``'s head into branch ``into``, written through the
    store with its snapshot (as merge makes one), created BEFORE the commit it merges in
    (clocks of two nodes disagree), so only following every parent orders them."""
    first = repos.get_branch(repo, into).head
    second = repos.get_branch(repo, other).head
    assert first is not None and second is not None
    merged = repos.get_commit(repo, second)
    commit = CommitRecord(
        id=new_commit_id(),
        repo=repo,
        branch=into,
        parent=first,
        created=merged.created - timedelta(hours=1),
        message=f"merge {other} into {into}",
        origin="merge",
        holders=(repos.coordinator.node_id,),
        merge_parents=(second,),
    )
    repos.pool.snapshot(
        repos.commit_path(repo, second), repos.commit_path(repo, commit.id), readonly=True
    )
    repos.store.finish_commit(CommitIntent(commit), generation=0)
    return commit


@pytest.fixture
def rich_history(history: RepoService, volumes: VolumeService) -> RepoService:
    """``history`` plus a pipeline-style commit on dev (provenance and job) and a merge
    commit of dev into master."""
    path = volumes.mount("pfs/r/dev", "p1")
    (path / "out.txt").write_text("made by a job")
    history.commit_working_copy(
        "r",
        "dev",
        "job output",
        origin="pipeline",
        provenance=(f"text@{'a' * 32}", f"words@{'b' * 32}"),
        job="20261130T000000000000-abcdef",
    )
    volumes.unmount("pfs/r/dev", "p1")
    write_merge_commit(history, "r", "master", "dev")
    return history


def test_every_field_of_every_commit_survives_the_round_trip(
    rich_history: RepoService, other_pool: RepoService
) -> None:
    import_repo(other_pool, io.BytesIO(export_bytes(rich_history, "r")))
    before = {c.id: c for c in rich_history.store.list_commits("r")}
    after = {c.id: c for c in other_pool.store.list_commits("r")}
    assert {i: record_fields(c) for i, c in before.items()} == {
        i: record_fields(c) for i, c in after.items()
    }
    merge = after[other_pool.get_branch("r", "master").head or ""]
    job = after[merge.merge_parents[0]]
    assert len(merge.parents) == 2 and merge.origin == "merge"
    assert job.provenance == (f"text@{'a' * 32}", f"words@{'b' * 32}")
    assert job.job == "20261130T000000000000-abcdef"
    for commit in after.values():
        if not commit.pruned:
            assert files_of(rich_history, "r", commit.id) == files_of(other_pool, "r", commit.id)


def test_the_export_puts_every_parent_first(rich_history: RepoService) -> None:
    data = export_bytes(rich_history, "r")
    entries = json.loads(data[len(MAGIC) :].split(b"\n", 1)[0])["commits"]
    seen: set[str] = set()
    for entry in entries:
        assert all(p in seen for p in [entry["parent"], *entry["merge_parents"]] if p)
        seen.add(entry["id"])
    merge = entries[-1]
    assert merge["merge_parents"] and merge["origin"] == "merge"


def as_format_1(data: bytes) -> bytes:
    """The file an older pfs wrote: format 1, no merge parents, provenance or job, no
    checksum."""
    header, rest = data[len(MAGIC) :].split(b"\n", 1)
    metadata = json.loads(header)
    metadata["format"] = 1
    for entry in metadata["commits"]:
        for key in ("merge_parents", "provenance", "job"):
            del entry[key]
    return MAGIC + json.dumps(metadata).encode() + b"\n" + rest[:-32]


def test_format_1_files_are_still_read(history: RepoService, other_pool: RepoService) -> None:
    import_repo(other_pool, io.BytesIO(as_format_1(export_bytes(history, "r"))))
    same_history(history, other_pool, "r", "r")
    assert all(
        c.provenance == () and c.job is None and c.merge_parents == ()
        for c in other_pool.store.list_commits("r")
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c[1].update(merge_parents=[c[-1]["id"]]), "listed before it"),
        (lambda c: c[1].update(merge_parents=["f" * 32]), "listed before it"),
        (lambda c: c[1].update(merge_parents=[c[0]["id"], c[0]["id"]]), "distinct"),
        (lambda c: c[0].update(merge_parents=[c[0]["id"]]), "only with a parent"),
        (lambda c: c[1].update(merge_parents="x"), "must be a list"),
        (lambda c: c[1].update(provenance=["no-at-sign"]), "REPO@ID"),
        (lambda c: c[1].update(provenance=["text@abc"]), "REPO@ID"),
        (lambda c: c[1].update(provenance=[f"../x@{'a' * 32}"]), "letter or digit"),
        (lambda c: c[1].update(provenance=[7]), "REPO@ID"),
        (lambda c: c[1].update(provenance="text"), "no list"),
        (lambda c: c[1].update(job=7), "job must be null or a string"),
        (lambda c: c[1].update(job=""), "job must be null or a string"),
        (lambda c: c[1].pop("job"), "lacks the field 'job'"),
        (lambda c: c[1].update(parent=c[-1]["id"]), "listed before it"),
        (
            lambda c: c[1].update(message="LONE"),
            "lone UTF-16 surrogate (\\ud800) at commits[1].message",
        ),
    ],
)
def test_inconsistent_metadata_is_refused(
    rich_history: RepoService, other_pool: RepoService, change: Any, says: str
) -> None:
    data = export_bytes(rich_history, "r")
    header, rest = data[len(MAGIC) :].split(b"\n", 1)
    metadata = json.loads(header)
    change(metadata["commits"])
    line = json.dumps(metadata).replace("LONE", "\\ud800").encode()
    with pytest.raises(InvalidRequest, match="the export file is damaged: its metadata") as e:
        import_repo(other_pool, io.BytesIO(MAGIC + line + b"\n" + rest))
    assert says in str(e.value)
    assert_nothing_left(other_pool)


def assert_nothing_left(pool: RepoService) -> None:
    assert pool.list_repos() == []
    assert list(pool.incoming_dir.iterdir()) == []
    assert list(pool.repos_dir.iterdir()) == []


# A damaged export file says it is damaged, and leaves nothing behind (issue 9)

DAMAGED = "the export file is damaged: "


def refused_cleanly(pool: RepoService, data: bytes) -> str:
    """Import ``data``, which must be refused as damaged with no pool path in the
    message and nothing left behind; the message."""
    with pytest.raises(InvalidRequest) as refused:
        import_repo(pool, io.BytesIO(data))
    message = str(refused.value)
    assert message.startswith(DAMAGED), message
    assert str(pool.pool.root) not in message and "ERROR" not in message, message
    assert_nothing_left(pool)
    return message


def sample_offsets(size: int, count: int, seed: int) -> list[int]:
    """``count`` offsets in [1, size): spread over the whole file, plus random ones."""
    rng = random.Random(seed)
    spread = {1 + i * (size - 2) // (count // 2) for i in range(count // 2)}
    return sorted(spread | {rng.randrange(1, size) for _ in range(count - len(spread))})


@pytest.fixture
def small_export(volumes: VolumeService, repos: RepoService) -> bytes:
    """An export of three commits on two branches (one of them a merge), small enough
    to import many times over."""
    for n, files in enumerate([{"a": b"1"}, {"b": os.urandom(20_000)}]):
        path = volumes.mount("pfs/s", f"m{n}")
        for name, data in files.items():
            (path / name).write_bytes(data)
        volumes.unmount("pfs/s", f"m{n}")
    repos.create_branch("s", "dev", parse_ref("master~1"))
    path = volumes.mount("pfs/s/dev", "d")
    (path / "c").write_text("dev")
    volumes.unmount("pfs/s/dev", "d")
    write_merge_commit(repos, "s", "master", "dev")
    return export_bytes(repos, "s")


def test_a_file_cut_anywhere_is_refused_as_damaged(
    small_export: bytes, other_pool: RepoService
) -> None:
    for cut in sample_offsets(len(small_export), 40, seed=1):
        refused_cleanly(other_pool, small_export[:cut])
    for cut in (len(MAGIC), len(MAGIC) + 1, len(small_export) - 32, len(small_export) - 1):
        refused_cleanly(other_pool, small_export[:cut])
    import_repo(other_pool, io.BytesIO(small_export))  # cut exactly at the end: whole
    assert other_pool.store.count_commits("s") == 4


def test_a_flipped_byte_anywhere_is_refused_as_damaged(
    small_export: bytes, other_pool: RepoService
) -> None:
    messages = set()
    for offset in [0, len(MAGIC) - 1, *sample_offsets(len(small_export), 40, seed=2)]:
        flipped = bytearray(small_export)
        flipped[offset] ^= 0x41
        if offset < len(MAGIC):  # another header: not taken for an export file at all
            with pytest.raises(InvalidRequest, match="this is not a pfs export file"):
                import_repo(other_pool, io.BytesIO(bytes(flipped)))
            assert_nothing_left(other_pool)
            continue
        messages.add(refused_cleanly(other_pool, bytes(flipped)).split(" (")[0][:60])
    assert len(messages) > 1, messages  # refused at different checks, not one by luck


def test_trailing_bytes_are_refused(small_export: bytes, other_pool: RepoService) -> None:
    assert "more bytes follow its end" in refused_cleanly(other_pool, small_export + b"\0")
    old = as_format_1(small_export)
    assert "more bytes follow its end" in refused_cleanly(other_pool, old + b"x" * 9)
    old_and_new = old + small_export
    assert "more bytes follow its end" in refused_cleanly(other_pool, old_and_new)


def test_a_frame_that_is_not_a_btrfs_stream_is_refused_without_btrfs_words(
    other_pool: RepoService, tmp_path: Path
) -> None:
    entry = {
        "id": "c" * 32,
        "parent": None,
        "merge_parents": [],
        "branch": "master",
        "created": "2026-11-30T00:00:00.000000Z",
        "message": "m",
        "origin": "api",
        "provenance": [],
        "job": None,
        "stream": True,
        "base": None,
    }
    metadata = {
        "format": 2,
        "repo": {"name": "x", "created": "2026-11-30T00:00:00.000000Z", "description": ""},
        "branches": [{"name": "master", "head": "c" * 32, "created": entry["created"]}],
        "commits": [entry],
    }
    body = MAGIC + json.dumps(metadata).encode() + b"\n"
    body += b"".join(encode_frames([b"this is not a btrfs send stream" * 100]))
    message = refused_cleanly(other_pool, body + hashlib.sha256(body).digest())
    assert f"the send stream of commit {'c' * 32} was refused: it is not a btrfs send" in message
    assert "/" not in message  # no path of the pool


def test_the_api_answers_400_for_a_damaged_file(
    small_export: bytes, other_pool: RepoService
) -> None:
    app = api_app(other_pool, VolumeService(other_pool, other_pool.store, prefix="pfs"))
    client = app.test_client()
    for data in (small_export[:-40], small_export + b"x", small_export[:2000]):
        reply = client.post("/v1/imports", data=data)
        assert reply.status_code == 400, reply.json
        assert reply.json["error"]["code"] == "invalid_request"
        assert reply.json["error"]["message"].startswith(DAMAGED)
        assert_nothing_left(other_pool)
    assert client.post("/v1/imports", data=small_export).status_code == 201
