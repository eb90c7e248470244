"""Files at any commit (list, read, tar a folder) and writes to a branch without a
container (put, remove), each write that changes something making a commit.

Every path is relative to the commit's root and is walked name by name through open
folders (``pfs_volume.safepath``): no link is ever followed, at any name. A path with a
``..`` name, a name over 255 bytes or a path over 4096 bytes is refused. A symlink in
the middle of a path is refused (a path into a commit never goes through a link); a
symlink at its end is listed and archived as a link, and ``open`` (``cat``) reads
regular files only. Names that are not UTF-8 keep their bytes (``pfs_volume.filenames``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from pfs_volume import errors, safepath
from pfs_volume.errors import Conflict, InvalidRequest, NotFound, PoolFull, UndoFailed
from pfs_volume.failpoints import failpoint
from pfs_volume.filenames import printable
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.putlog import PUT_ORIGIN, PutMarker
from pfs_volume.repos import RepoService
from pfs_volume.tarwalk import tar_stream
from pfs_volume.upload import STAGING_FOLDER, Placement, StagingArea, write_file

log = logging.getLogger(__name__)

RM_ORIGIN = "rm"
ENTRY_KINDS = {"file": "file", "folder": "dir", "symlink": "symlink"}


@dataclass(frozen=True)
class Entry:
    """One entry of a folder in a commit.

    Attributes:
        name: its name (bytes that are not UTF-8 as surrogate escapes).
        kind: ``file``, ``dir``, ``symlink`` or ``other`` (FIFO, socket, device).
        size: bytes (a symlink: its target's length).
        mode: permission bits, octal, e.g. ``644``.
        target: a symlink's target as stored (never followed); None otherwise.
    """

    name: str
    kind: str
    size: int
    mode: str
    target: str | None = None


@dataclass(frozen=True)
class PutResult:
    """What a put did: the commit it made, or the unchanged head when the branch held
    exactly those bytes already (``changed`` False)."""

    commit: CommitRecord
    changed: bool


class FileService:
    """Reads commits' files and writes branches' files.

    Args:
        repos: the commit graph service.
    """

    def __init__(self, repos: RepoService) -> None:
        self.repos = repos
        self.staging = StagingArea(repos.pool_folder(STAGING_FOLDER))
        # made at start-up (``StagingArea.clear``), else by the first put that needs it

    def _commit_root(self, repo: str, ref: Ref) -> tuple[CommitRecord, Path]:
        commit = self.repos.require_data(self.repos.resolve_commit(repo, ref))
        if not self.repos.snapshot_exists(repo, commit.id):
            raise NotFound(f"the snapshot of commit {commit.id} is missing from this pool")
        return commit, self.repos.local_commit(repo, commit.id)

    def list(self, repo: str, ref: Ref, path: str = "") -> list[Entry]:
        """The entries of a folder, sorted by name; or the one entry of anything else
        (a symlink at the end of the path is listed, not followed).

        Raises:
            NotFound: no such commit or path. InvalidRequest: a bad path, or one through
                a link.
        """
        parts = safepath.split(path)
        commit, root = self._commit_root(repo, ref)
        with _reading(commit, parts), safepath.closing(safepath.open_parent(root, parts)) as parent:
            name = parts[-1] if parts else "."
            info = safepath.lstat_at(parent, name)
            if info is None:
                raise errors.Missing(f"there is no {safepath.shown(parts)}", "/".join(parts))
            if not stat.S_ISDIR(info.st_mode):
                return [_entry(parent, name, info)]
            with safepath.closing(safepath.open_child_folder(parent, name, parts)) as here:
                return [_entry(here, child, None) for child in sorted(os.listdir(here))]

    def open(self, repo: str, ref: Ref, path: str) -> BinaryIO:
        """A regular file of a commit, open for reading (the caller closes it).

        Raises:
            NotFound: no such commit or file. InvalidRequest: a folder, a symlink, a
                FIFO, device or socket (never opened), a bad path or one through a link.
        """
        parts = safepath.split(path)
        if not parts:
            raise InvalidRequest("/ is a folder; use pfs ls or pfs get for folders")
        commit, root = self._commit_root(repo, ref)
        with _reading(commit, parts), safepath.closing(safepath.open_parent(root, parts)) as parent:
            info = safepath.lstat_at(parent, parts[-1])
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise InvalidRequest(
                    f"{safepath.shown(parts)} is a folder; use pfs ls or pfs get for folders"
                )
            fd = safepath.open_regular(parent, parts[-1], parts)
        return os.fdopen(fd, "rb")

    def tar(self, repo: str, ref: Ref, path: str = "") -> Iterator[bytes]:
        """A folder (or anything else) of a commit as an uncompressed tar stream, in
        chunks, in bounded memory whatever its size. Links stay links.

        Raises (before the first chunk):
            NotFound: no such commit or path. InvalidRequest: a bad path or one through
                a link.
        """
        parts = safepath.split(path)
        commit, root = self._commit_root(repo, ref)
        with _reading(commit, parts):
            return tar_stream(root, parts, parts[-1] if parts else repo)

    def put(
        self, repo: str, branch: str, path: str, data: IO[bytes], message: str = ""
    ) -> PutResult:
        """Write ``data`` to ``path`` on a branch and commit it; when the branch holds
        exactly those bytes there already, nothing is written and no commit is made.
        The bytes are staged outside the working copy, which is touched only once they
        are all in (``pfs_volume.upload``); a crash is recovered by ``putlog``.

        Returns:
            The commit made, or the unchanged head (``changed`` False).
        Raises:
            NotFound: no such repo or branch. InUse: the branch is mounted.
            Conflict: its working copy holds uncommitted changes, or a name on the way
                is a file, symlink or other non-folder (also when it became one while
                the bytes came in).
            InvalidRequest: a path that is the root, a folder, or malformed.
            PoolFull: the pool is full; the branch is left as it was.
        """
        parts = safepath.split(path)
        if not parts:
            raise InvalidRequest("put needs a file path, not the root")
        with (
            self.repos.branch_lock(repo, branch),
            self.repos.reporting_full_pool(f"put {safepath.shown(parts)} on {repo}/{branch}"),
        ):
            root = self._writable_root(repo, branch, "write to")
            head = self.repos.get_branch(repo, branch).head
            markers: list[PutMarker] = []

            def before_placing(placement: Placement) -> None:
                markers.append(PutMarker.write(self.repos, repo, branch, placement))

            try:
                changed = write_file(root, parts, data, self.staging, before_placing)
            except errors.LinkInPath as exc:
                raise Conflict(
                    f"cannot put {safepath.shown(parts)}: {_where(exc.where)} is a symlink, "
                    "not a folder; put never writes through links"
                ) from None
            except errors.NotAFolder as exc:
                raise Conflict(
                    f"cannot put {safepath.shown(parts)}: {_where(exc.where)} is a {exc.kind}, "
                    "not a folder"
                ) from None
            except UndoFailed:
                _clear(markers)
                raise
            except BaseException:
                if markers:  # the working copy was touched: its unnamed file came and went
                    self._settle(repo, branch, root, head)
                _clear(markers)
                raise
            if not changed:
                _clear(markers)
                if head is None:  # cannot be: an empty branch holds no file to match
                    raise InvalidRequest("nothing changed, and the branch has no commit")
                return PutResult(self.repos.get_commit(repo, head), changed=False)
            # The marker stays until the commit is made: a crash before it leaves a named
            # file and a marker, and start-up commits the put (``putlog``).
            failpoint("put.before_commit")
            try:
                made = self.repos.commit_working_copy(
                    repo, branch, message or f"put {safepath.shown(parts)}", PUT_ORIGIN
                )
            except PoolFull:
                # The copy was clean before this put (``_writable_root``): dropping it
                # undoes the write, and the next use makes it again from the head.
                self.repos.drop_working_copy(repo, branch)
                raise
            finally:
                _clear(markers)
            if made is None:
                raise InvalidRequest("nothing changed: the branch already holds exactly that")
            return PutResult(made, changed=True)

    def remove(
        self, repo: str, branch: str, path: str, recursive: bool = False, message: str = ""
    ) -> CommitRecord:
        """Remove a file, link or other entry (or, with ``recursive``, a folder) on a
        branch and commit it. Links are removed, never followed.

        Raises:
            NotFound: no such repo, branch or path. InUse: the branch is mounted.
            Conflict: its working copy holds uncommitted changes.
            InvalidRequest: the root, a folder without ``recursive``, a bad path or one
                through a link.
        """
        parts = safepath.split(path)
        if not parts:
            raise InvalidRequest("rm needs a path; the root cannot be removed")
        with self.repos.branch_lock(repo, branch):
            root = self._writable_root(repo, branch, "remove from")
            where = f"branch {repo}/{branch}"
            with (
                _reading(where, parts),
                safepath.closing(safepath.open_parent(root, parts)) as parent,
            ):
                info = safepath.lstat_at(parent, parts[-1])
                if info is None:
                    raise NotFound(f"{where} has no {safepath.shown(parts)}")
                if stat.S_ISDIR(info.st_mode):
                    if not recursive:
                        raise InvalidRequest(
                            f"{safepath.shown(parts)} is a folder; use -r to remove it"
                        )
                    _changing(lambda: safepath.remove_tree(parent, parts[-1]), where, parts)
                else:
                    _changing(lambda: os.unlink(parts[-1], dir_fd=parent), where, parts)
            made = self.repos.commit_working_copy(
                repo, branch, message or f"rm {safepath.shown(parts)}", RM_ORIGIN
            )
            if made is None:
                raise InvalidRequest("nothing changed: the branch already holds exactly that")
            return made

    def _writable_root(self, repo: str, branch: str, verb: str) -> Path:
        self.repos.get_branch(repo, branch)
        self.repos.refuse_if_busy(repo, branch, verb)
        return self.repos.working_copy(repo, branch)

    def _settle(self, repo: str, branch: str, root: Path, head: str | None) -> None:
        """After a put whose move into the working copy failed and was undone: its
        unnamed file came and went, which moves the subvolume's generation, so record
        the copy as clean again."""
        self.repos.get_branch(repo, branch)
        if self.repos.has_uncommitted_changes(repo, branch):
            # Restoring the branch's state, as after a write a full pool refused: this
            # may use the pool's reserve.
            self.repos.freeing_space(
                f"settling {repo}/{branch} after a put",
                lambda: self.repos.mark_clean(repo, branch, head),
            )


@contextlib.contextmanager
def _reading(what: CommitRecord | str, parts: tuple[str, ...]) -> Iterator[None]:
    """Turn safepath's errors into what a reader of ``what`` should see: a name that is
    missing or not a folder means there is no such path (404, saying which name); a
    link in the path is refused (400)."""
    label = what if isinstance(what, str) else f"commit {what.id}"
    try:
        yield
    except (errors.Missing, errors.NotAFolder) as exc:
        why = "" if exc.where == "/".join(parts) else f" ({exc})"
        raise NotFound(f"{label} has no {safepath.shown(parts)}{why}") from None
    except errors.LinkInPath as exc:
        raise InvalidRequest(f"{exc} (in {label})") from None


def _changing(step: Callable[[], None], label: str, parts: tuple[str, ...]) -> None:
    """Run a removal; a name that turned into something else under it (a container
    writing to the working copy at once) is a Conflict saying so, not a crash."""
    try:
        step()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
            raise
        raise Conflict(
            f"{safepath.shown(parts)} in {label} changed while it was removed "
            f"({exc.strerror}): something writes to the working copy; what was removed "
            "so far stays removed, nothing was committed"
        ) from None


def _clear(markers: list[PutMarker]) -> None:
    for marker in markers:
        marker.clear()


def _where(where: str) -> str:
    return "/" + printable(where)


def _entry(folder: int, name: str, info: os.stat_result | None) -> Entry:
    """The entry ``name`` of an open folder (``info``: its lstat, if known)."""
    if info is None:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    kind = ENTRY_KINDS.get(safepath.kind_of(info.st_mode), "other")
    target = safepath.read_link(folder, name, printable(name)) if kind == "symlink" else None
    mode = format(stat.S_IMODE(info.st_mode), "o")
    return Entry(name if name != "." else "", kind, info.st_size, mode, target)
