"""Clone with history: a repo exported to one file and imported on another pool, with
identical commit ids, log and file contents.

The file (format 1):

    b"PFSEXPORT1\\n"
    one line of JSON: {"format": 1, "repo": {...}, "branches": [...], "commits": [...]}
    then, for each commit whose "stream" is true, in the order of "commits" (parents
    first): its ``btrfs send`` stream (incremental against "base" when that is set) as
    frames of an 8-byte big-endian length and that many bytes, ended by a zero length.

Working copies are not exported, only commits; pruned commits come as records only.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pfs_volume.btrfs import streams
from pfs_volume.errors import Conflict, InvalidRequest, PfsError
from pfs_volume.frames import decode_frames, encode_frames
from pfs_volume.meta import BranchRecord, CommitRecord, RepoRecord, rfc3339
from pfs_volume.names import check_component, is_commit_prefix
from pfs_volume.repos import IMPORT_MARKER, RepoService

log = logging.getLogger(__name__)

MAGIC = b"PFSEXPORT1\n"
FORMAT = 1
MAX_METADATA = 256 * 1024 * 1024


def export_repo(repos: RepoService, name: str) -> Iterator[bytes]:
    """The export file of repo ``name``, in chunks.

    Raises (before the first chunk):
        NotFound: no such repo.
    """
    repo = repos.get_repo(name)
    commits = _parents_first(repos.store.list_commits(name))
    have = {c.id for c in commits if not c.pruned}
    entries = []
    for commit in commits:
        base = commit.parent if commit.parent in have else None
        entries.append(
            {
                **_commit_fields(commit),
                "stream": commit.id in have,
                "base": base if commit.id in have else None,
            }
        )
    metadata = {
        "format": FORMAT,
        "repo": {
            "name": repo.name,
            "created": rfc3339(repo.created),
            "description": repo.description,
        },
        "branches": [
            {"name": b.name, "head": b.head, "created": rfc3339(b.created)}
            for b in repos.store.list_branches(name)
        ],
        "commits": entries,
    }
    return _export_stream(repos, name, metadata, entries)


def _export_stream(
    repos: RepoService, name: str, metadata: dict[str, Any], entries: list[dict[str, Any]]
) -> Iterator[bytes]:
    yield MAGIC + json.dumps(metadata).encode() + b"\n"
    for entry in entries:
        if not entry["stream"]:
            continue
        base = repos.local_commit(name, entry["base"]) if entry["base"] else None
        yield from encode_frames(streams.send(repos.local_commit(name, entry["id"]), base))
    log.info("repo=%s exported %d commit(s)", name, len(entries))


def import_repo(repos: RepoService, source: IO[bytes], name: str | None = None) -> RepoRecord:
    """Import an export file as repo ``name`` (default: its original name).

    Everything or nothing: snapshots are received into ``incoming/`` first and the
    records written in one transaction at the end.

    Raises:
        InvalidRequest: not an export file, or a damaged one. Conflict: the repo exists.
        StorageError: btrfs receive failed.
    """
    if source.read(len(MAGIC)) != MAGIC:
        raise InvalidRequest("this is not a pfs export file (pfs repo export makes them)")
    metadata = _metadata(source.readline(MAX_METADATA))
    target = check_component(name or metadata["repo"]["name"], "repo")
    if repos.repo_exists(target):
        raise Conflict(f"repo {target!r} exists already; import it --as another name")
    staging = repos.incoming_dir / f"import-{secrets.token_hex(6)}"
    (staging / "commits").mkdir(parents=True)
    (staging / "branches").mkdir()
    (staging / IMPORT_MARKER).touch()
    try:
        for entry in metadata["commits"]:
            if entry["stream"]:
                made = streams.receive(_frames(source), staging / "commits")
                if made.name != entry["id"]:
                    raise InvalidRequest(
                        f"the export file is damaged: a stream for {made.name} where "
                        f"{entry['id']} was due"
                    )
        return _install(repos, staging, target, metadata)
    except BaseException:
        _discard(repos, staging)
        raise


def _install(
    repos: RepoService, staging: Path, target: str, metadata: dict[str, Any]
) -> RepoRecord:
    replicas, placement = repos.coordinator.place(target, None)
    repo = RepoRecord(
        target,
        datetime.fromisoformat(metadata["repo"]["created"]),
        metadata["repo"]["description"],
        replicas=replicas,
        placement=placement,
    )
    commits = [
        CommitRecord(
            id=c["id"],
            repo=target,
            branch=c["branch"],
            parent=c["parent"],
            created=datetime.fromisoformat(c["created"]),
            message=c["message"],
            origin=c["origin"],
            pruned=not c["stream"],
            holders=(repos.coordinator.node_id,) if c["stream"] else (),
        )
        for c in metadata["commits"]
    ]
    branches = [
        BranchRecord(
            repo=target,
            name=b["name"],
            head=b["head"],
            created=datetime.fromisoformat(b["created"]),
        )
        for b in metadata["branches"]
    ]
    with repos.repo_lock(target):
        if repos.repo_exists(target) or repos.repo_dir(target).exists():
            raise Conflict(f"repo {target!r} exists already; import it --as another name")
        # One rename puts every snapshot in place; the marker says the records may not be
        # written yet (start-up removes such a folder).
        staging.rename(repos.repo_dir(target))
        repos.store.import_repo(repo, branches, commits)
        (repos.repo_dir(target) / IMPORT_MARKER).unlink()
    log.info("repo=%s imported with %d commit(s)", target, len(commits))
    return repo


def _discard(repos: RepoService, staging: Path) -> None:
    if staging.exists():
        repos.pool.delete_tree(staging)


def recover_imports(repos: RepoService) -> list[str]:
    """Finish or undo imports a crash interrupted after their snapshots were moved into
    place; the names of the repos it removed. (Unmoved ones are in ``incoming/``, which
    start-up empties.)"""
    removed = []
    for marker in repos.repos_dir.glob(f"*/{IMPORT_MARKER}"):
        name = marker.parent.name
        if repos.repo_exists(name):
            marker.unlink()
        else:
            repos.pool.delete_tree(marker.parent)
            removed.append(name)
    return removed


def _frames(source: IO[bytes]) -> Iterator[bytes]:
    return decode_frames(
        source.read,
        truncated=lambda: InvalidRequest("the export file is truncated"),
        too_long=lambda _n: InvalidRequest("the export file is damaged: a frame is too long"),
    )


def _metadata(line: bytes) -> dict[str, Any]:
    try:
        metadata = json.loads(line)
        _require(metadata["format"] == FORMAT)
        check_component(metadata["repo"]["name"], "repo")
        datetime.fromisoformat(metadata["repo"]["created"])
        ids = set()
        for c in metadata["commits"]:
            _require(is_commit_prefix(c["id"]) and len(c["id"]) == 32 and c["id"] not in ids)
            _require(c["parent"] is None or c["parent"] in ids)
            _require(c["base"] is None or c["base"] in ids)
            _require(isinstance(c["stream"], bool))
            _require(all(isinstance(c[k], str) for k in ("branch", "message", "origin")))
            datetime.fromisoformat(c["created"])
            ids.add(c["id"])
        for b in metadata["branches"]:
            check_component(b["name"], "branch")
            _require(b["head"] is None or b["head"] in ids)
            datetime.fromisoformat(b["created"])
    except (ValueError, KeyError, TypeError, AttributeError, PfsError) as exc:
        raise InvalidRequest(
            f"the export file's metadata is damaged or of another version "
            f"(format {FORMAT} is read): {exc!r}"
        ) from None
    return dict(metadata)


def _require(condition: bool) -> None:
    if not condition:
        raise ValueError("an inconsistent entry")


def _commit_fields(commit: CommitRecord) -> dict[str, Any]:
    return {
        "id": commit.id,
        "parent": commit.parent,
        "branch": commit.branch,
        "created": rfc3339(commit.created),
        "message": commit.message,
        "origin": commit.origin,
    }


def _parents_first(commits: list[CommitRecord]) -> list[CommitRecord]:
    """Commits ordered so that each comes after its parent."""
    by_id = {c.id: c for c in commits}
    done: set[str] = set()
    ordered: list[CommitRecord] = []
    for commit in sorted(commits, key=lambda c: c.created):
        chain = []
        current: CommitRecord | None = commit
        while current is not None and current.id not in done:
            chain.append(current)
            current = by_id.get(current.parent) if current.parent else None
        for item in reversed(chain):
            done.add(item.id)
            ordered.append(item)
    return ordered
