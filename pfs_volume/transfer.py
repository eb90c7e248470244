"""Clone with history: a repo exported to one file and imported on another pool, with
identical commit ids, log, files and every field of every commit record.

The file (format 2; ``export_format`` describes the metadata):

    b"PFSEXPORT1\\n"
    one line of JSON: {"format": 2, "repo": {...}, "branches": [...], "commits": [...]}
    then, for each commit whose "stream" is true, in the order of "commits" (every parent
    first): its ``btrfs send`` stream (incremental against "base" when that is set) as
    frames of an 8-byte big-endian length and that many bytes, ended by a zero length;
    then the SHA-256 digest (32 bytes) of everything before it, and nothing after.

Format 1 files (no digest, no merge parents, provenance or job) are still read. A file
that is cut, changed or followed by more bytes is refused as damaged, and an import that
is refused leaves nothing behind.
Working copies are not exported, only commits; pruned commits come as records only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pfs_volume.btrfs import streams
from pfs_volume.errors import (
    Conflict,
    InvalidRequest,
    LeaseLost,
    PoolFull,
    StorageError,
    StreamRefused,
    Unavailable,
)
from pfs_volume.export_format import (
    DAMAGED,
    FORMAT,
    MAX_METADATA,
    check_metadata,
    commit_entry,
    commit_record,
    parents_first,
)
from pfs_volume.failpoints import failpoint
from pfs_volume.frames import MAX_FRAME, decode_frames, encode_frames
from pfs_volume.meta import BranchRecord, CommitRecord, RepoRecord
from pfs_volume.meta.codec import branch_fields, pick, repo_fields
from pfs_volume.names import check_component
from pfs_volume.repos import IMPORT_MARKER, RepoService
from pfs_volume.space import is_no_space

log = logging.getLogger(__name__)

MAGIC = b"PFSEXPORT1\n"
DIGEST_SIZE = hashlib.sha256().digest_size


def export_repo(repos: RepoService, name: str) -> Iterator[bytes]:
    """The export file of repo ``name``, in chunks. The snapshots it sends are pinned
    (``RepoService.pinned``) from this call until the stream ends or is closed: a gc
    meanwhile prunes as usual and their deletion waits, and the repo is not deleted.

    Raises (before the first chunk):
        NotFound: no such repo, or a commit whose data no node holds.
        Unavailable: a commit this node lacks cannot be fetched now.
    """
    repos.get_repo(name)
    stream = _export_stream(repos, name, parents_first(repos.list_commits(name)))
    next(stream)  # pins, then checks and fetches: its errors are raised here
    return _with_digest(stream)


def _export_stream(repos: RepoService, name: str, listed: list[CommitRecord]) -> Iterator[bytes]:
    """The export file of the commits ``listed`` (parents first) without its digest;
    its first item (b"") comes once their snapshots are pinned and at hand."""
    with repos.pinned(name, [c.id for c in listed if not c.pruned]):
        repo = repos.get_repo(name)
        # Read again under the pins: one a gc pruned (and deleted) before they held is
        # exported as a record only.
        now = {c.id: c for c in repos.list_commits(name)}
        commits = [now.get(c.id, c) for c in listed]
        have = {c.id for c in commits if not c.pruned}
        # Only copies this node holds (fetched if not); their paths are kept, as a gc may
        # mark them pruned while the export runs.
        paths = {commit_id: repos.local_commit(name, commit_id) for commit_id in have}
        entries = [
            commit_entry(
                commit,
                stream=commit.id in have,
                base=commit.parent if commit.id in have and commit.parent in have else None,
            )
            for commit in commits
        ]
        metadata = {
            "format": FORMAT,
            "repo": pick(repo_fields(repo), ("name", "created", "description")),
            "branches": [
                pick(branch_fields(b), ("name", "head", "created"))
                for b in repos.list_branches(name)
            ],
            "commits": entries,
        }
        yield b""
        yield MAGIC + json.dumps(metadata).encode() + b"\n"
        for entry in entries:
            if not entry["stream"]:
                continue
            base = paths[entry["base"]] if entry["base"] else None
            yield from encode_frames(streams.send(paths[entry["id"]], base))
    log.info("repo=%s exported %d commit(s)", name, len(entries))


def _with_digest(chunks: Iterable[bytes]) -> Iterator[bytes]:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    yield digest.digest()


def import_repo(repos: RepoService, source: IO[bytes], name: str | None = None) -> RepoRecord:
    """Import an export file as repo ``name`` (default: its original name).

    Everything or nothing: snapshots are received into ``incoming/`` first, the whole
    file is checked, and the records are written in one transaction at the end.

    Raises:
        InvalidRequest: not an export file, or a damaged one ("the export file is
            damaged: ..."). Conflict: the repo exists.
        PoolFull: the pool is full.
    """
    reader = _DigestReader(source)
    header = reader.read_full(len(MAGIC))
    if header != MAGIC:
        if header and MAGIC.startswith(header):
            raise _cut("in its header")
        raise InvalidRequest("this is not a pfs export file (pfs repo export makes them)")
    metadata = check_metadata(reader.readline(MAX_METADATA))
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
                twins = repos.twins(target, entry["base"]) if entry["base"] else []
                _receive(reader, staging / "commits", entry["id"], entry["base"], twins)
        _check_end(reader, metadata["format"])
        with repos.reporting_full_pool(f"the import of {target}"):
            return _install(repos, staging, target, metadata)
    except PoolFull as exc:
        _discard(repos, staging)
        raise repos.pool_full_error(f"the import of {target}", exc) from None
    except BaseException:
        _discard(repos, staging)
        raise


def _receive(
    reader: _DigestReader, into: Path, commit_id: str, base: str | None, twins: list[Path]
) -> None:
    """Receive the next stream of the file, which must be commit ``commit_id``'s, built on
    the earlier commit ``base`` of the file (a full stream when None), or on one of its
    ``twins`` in other repos.

    Raises:
        StreamRefused: the stream would reach outside its commit (see ``stream_check``).
        InvalidRequest: the stream is damaged. StorageError: the pool is full.
    """
    frames = decode_frames(
        reader.read,
        truncated=lambda: _cut(f"in the stream of commit {commit_id}"),
        too_long=lambda n: InvalidRequest(
            f"{DAMAGED}: a frame of {n} bytes in the stream of commit {commit_id} (frames "
            f"hold at most {MAX_FRAME})"
        ),
    )
    try:
        streams.receive(frames, into, commit_id, into / base if base else None, twins)
    except StreamRefused as exc:
        log.warning("import: %s", exc)
        raise StreamRefused(f"{DAMAGED}: {exc}") from None
    except StorageError as exc:
        # btrfs's own words name paths in the pool: they go to the log, not the user.
        log.warning("import: the stream of commit %s was refused: %s", commit_id, exc)
        if is_no_space(exc):
            raise PoolFull(
                f"the pool is full: commit {commit_id} of the export file does not fit; "
                "nothing was imported"
            ) from None
        raise InvalidRequest(
            f"{DAMAGED}: the stream of commit {commit_id} is not a btrfs send stream that "
            "receives whole (the daemon's log has btrfs's words)"
        ) from None


def _check_end(reader: _DigestReader, version: int) -> None:
    """The file ends here: after the digest (format 2) or the last stream (format 1)."""
    if version >= 2:
        computed = reader.digest()
        given = reader.read_exactly(DIGEST_SIZE, lambda: _cut("in its checksum"), hashed=False)
        if given != computed:
            raise InvalidRequest(
                f"{DAMAGED}: its SHA-256 checksum does not match its content (changed "
                "after it was written?)"
            )
    if reader.read(1, hashed=False):
        raise InvalidRequest(
            f"{DAMAGED}: more bytes follow its end (an export file ends with its "
            + ("checksum)" if version >= 2 else "last stream's end frame)")
        )


def _cut(where: str) -> InvalidRequest:
    return InvalidRequest(f"{DAMAGED}: it ends {where} (cut short?)")


class _DigestReader:
    """Reads an export file and hashes what it read."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._digest = hashlib.sha256()

    def read(self, size: int, hashed: bool = True) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""
        data = self._source.read(size)
        if hashed:
            self._digest.update(data)
        return data

    def read_full(self, size: int, hashed: bool = True) -> bytes:
        """``size`` bytes, fewer only at the end of the file."""
        parts = []
        left = size
        while left and (data := self.read(left, hashed)):
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def read_exactly(
        self, size: int, cut: Callable[[], InvalidRequest], hashed: bool = True
    ) -> bytes:
        """Exactly ``size`` bytes. Raises ``cut()`` when the file ends first."""
        data = self.read_full(size, hashed)
        if len(data) != size:
            raise cut()
        return data

    def readline(self, limit: int) -> bytes:
        """One line, with its newline; without one when it is cut or over ``limit``."""
        line = self._source.readline(limit)
        self._digest.update(line)
        return line

    def digest(self) -> bytes:
        """The SHA-256 digest of what was read (hashed) so far."""
        return self._digest.digest()


def _install(
    repos: RepoService, staging: Path, target: str, metadata: dict[str, Any]
) -> RepoRecord:
    placement = repos.place(target, None)
    repo = RepoRecord(
        target,
        datetime.fromisoformat(metadata["repo"]["created"]),
        metadata["repo"]["description"],
        replicas=placement.replicas,
        placement=placement.nodes,
    )
    here = (repos.node_id,)
    commits = [commit_record(c, target, here) for c in metadata["commits"]]
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
        failpoint("import.after_rename")
        try:
            repos.install_records(repo, branches, commits)
        except LeaseLost:
            # Caught before Unavailable, its parent: the import's claim on the name
            # lapsed, and every write of a batched import is fenced by that claim, so no
            # repo record was written: remove the data now, as for any other refusal.
            repos.delete_tree(repos.repo_dir(target))
            raise
        except Unavailable:
            raise  # maybe written after all: start-up's recover_imports looks
        except BaseException:
            repos.delete_tree(repos.repo_dir(target))
            raise
        (repos.repo_dir(target) / IMPORT_MARKER).unlink()
    log.info("repo=%s imported with %d commit(s)", target, len(commits))
    return repo


def _discard(repos: RepoService, staging: Path) -> None:
    if staging.exists():
        repos.delete_tree(staging)


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
            repos.delete_tree(marker.parent)
            removed.append(name)
    return removed
