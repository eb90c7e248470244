"""Files at any commit (list, read, tar a folder) and writes to a branch without a
container (put, remove), each write making a commit.

Every path is relative to the commit's root. A path with a ``..`` component, or one that
resolves through a link to somewhere outside the commit (an absolute link, or a relative
one that climbs out), is refused: a commit never shows anything but itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from pfs_volume.errors import InvalidRequest, NotFound
from pfs_volume.meta import CommitRecord
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_PATH = 4096
PUT_ORIGIN = "put"
RM_ORIGIN = "rm"


@dataclass(frozen=True)
class Entry:
    """One entry of a folder in a commit."""

    name: str
    kind: str  # "file", "dir", "symlink" or "other"
    size: int
    mode: str  # permission bits, octal, e.g. "644"


def clean_path(text: str) -> PurePosixPath:
    """A commit-relative path from what a user typed (a leading ``/`` is the root).

    Raises:
        InvalidRequest: for a ``..`` component, a NUL byte or an over-long path.
    """
    if "\0" in text or len(text) > MAX_PATH:
        raise InvalidRequest(
            f"path {text[:60]!r} is not usable: no NUL bytes, at most {MAX_PATH} characters"
        )
    parts = [p for p in PurePosixPath(text).parts if p not in ("/", ".")]
    if ".." in parts:
        raise InvalidRequest(
            f"path {text!r} climbs out with '..'; give a path inside the commit, from its root"
        )
    return PurePosixPath(*parts)


def locate(root: Path, path: PurePosixPath) -> Path:
    """``root / path`` with links followed, refused when it leaves ``root``.

    Raises:
        InvalidRequest: when a link leads outside the commit.
    """
    full = root.joinpath(path)
    real = Path(os.path.realpath(full))
    base = Path(os.path.realpath(root))
    if real != base and base not in real.parents:
        raise InvalidRequest(
            f"path {str(path)!r} leads through a link to outside the commit; refused"
        )
    return real


class FileService:
    """Reads commits' files and writes branches' files.

    Args:
        repos: the commit graph service.
    """

    def __init__(self, repos: RepoService) -> None:
        self.repos = repos

    def _commit_root(self, repo: str, ref: Ref) -> tuple[CommitRecord, Path]:
        commit = self.repos.require_data(self.repos.resolve_commit(repo, ref))
        if not self.repos.snapshot_exists(repo, commit.id):
            raise NotFound(f"the snapshot of commit {commit.id} is missing from this pool")
        return commit, self.repos.local_commit(repo, commit.id)

    def _existing(self, root: Path, path: PurePosixPath, where: str) -> Path:
        full = locate(root, path)
        if not full.exists():
            raise NotFound(f"{where} has no {('/' + str(path)) if str(path) != '.' else '/'}")
        return full

    def list(self, repo: str, ref: Ref, path: str = "") -> list[Entry]:
        """The entries of a folder (or the one entry of a file), sorted by name.

        Raises:
            NotFound: no such commit or path. InvalidRequest: a path that climbs out.
        """
        commit, root = self._commit_root(repo, ref)
        target = clean_path(path)
        full = self._existing(root, target, f"commit {commit.id}")
        if full.is_dir():
            children = sorted(full.iterdir(), key=lambda p: p.name)
            return [_entry(child) for child in children]
        return [_entry(full)]

    def open(self, repo: str, ref: Ref, path: str) -> BinaryIO:
        """A file of a commit, open for reading (the caller closes it).

        Raises:
            NotFound: no such commit or file. InvalidRequest: a folder, or a path that
                climbs out.
        """
        commit, root = self._commit_root(repo, ref)
        target = clean_path(path)
        full = self._existing(root, target, f"commit {commit.id}")
        if full.is_dir():
            raise InvalidRequest(f"/{target} is a folder; use pfs ls or pfs get for folders")
        return open(full, "rb")

    def tar(self, repo: str, ref: Ref, path: str = "") -> Iterator[bytes]:
        """A folder (or file) of a commit as an uncompressed tar stream, in chunks, in
        bounded memory whatever its size. Links stay links.

        Raises (before the first chunk):
            NotFound: no such commit or path. InvalidRequest: a path that climbs out.
        """
        commit, root = self._commit_root(repo, ref)
        target = clean_path(path)
        full = self._existing(root, target, f"commit {commit.id}")
        name = target.name or repo
        return _tar_stream(full, name)

    def put(
        self, repo: str, branch: str, path: str, data: IO[bytes], message: str = ""
    ) -> CommitRecord:
        """Write ``data`` to ``path`` on a branch and commit it.

        Raises:
            NotFound: no such repo or branch. InUse: the branch is mounted.
            Conflict: its working copy holds uncommitted changes.
            InvalidRequest: a path that is the root, a folder, or climbs out.
        """
        target = clean_path(path)
        if not target.parts:
            raise InvalidRequest("put needs a file path, not the root")
        with self.repos.branch_lock(repo, branch):
            root = self._writable_root(repo, branch, "write to")
            parent = locate(root, target.parent)
            full = parent / target.name
            if full.is_dir() and not full.is_symlink():
                raise InvalidRequest(f"/{target} is a folder; give a file path")
            parent.mkdir(parents=True, exist_ok=True)
            partial = parent / f".{target.name}.pfs-partial"
            with open(partial, "wb") as out:
                shutil.copyfileobj(data, out, CHUNK)
            os.replace(partial, full)
            return self._commit(repo, branch, message or f"put /{target}", PUT_ORIGIN)

    def remove(
        self, repo: str, branch: str, path: str, recursive: bool = False, message: str = ""
    ) -> CommitRecord:
        """Remove a file (or, with ``recursive``, a folder) on a branch and commit it.

        Raises:
            NotFound: no such repo, branch or path. InUse: the branch is mounted.
            Conflict: its working copy holds uncommitted changes.
            InvalidRequest: the root, a folder without ``recursive``, a path that climbs out.
        """
        target = clean_path(path)
        if not target.parts:
            raise InvalidRequest("rm needs a path; the root cannot be removed")
        with self.repos.branch_lock(repo, branch):
            root = self._writable_root(repo, branch, "remove from")
            full = locate(root, target.parent) / target.name
            if not full.exists() and not full.is_symlink():
                raise NotFound(f"branch {repo}/{branch} has no /{target}")
            if full.is_dir() and not full.is_symlink():
                if not recursive:
                    raise InvalidRequest(f"/{target} is a folder; use -r to remove it")
                shutil.rmtree(full)
            else:
                full.unlink()
            return self._commit(repo, branch, message or f"rm /{target}", RM_ORIGIN)

    def _writable_root(self, repo: str, branch: str, verb: str) -> Path:
        self.repos.get_branch(repo, branch)
        self.repos.refuse_if_busy(repo, branch, verb)
        return self.repos.working_copy(repo, branch)

    def _commit(self, repo: str, branch: str, message: str, origin: str) -> CommitRecord:
        made = self.repos.commit_working_copy(repo, branch, message, origin)
        if made is None:  # the same bytes written again: still the user's explicit commit
            raise InvalidRequest("nothing changed: the branch already holds exactly that")
        return made


def _entry(path: Path) -> Entry:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        kind = "symlink"
    elif stat.S_ISDIR(info.st_mode):
        kind = "dir"
    elif stat.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "other"
    return Entry(path.name, kind, info.st_size, format(stat.S_IMODE(info.st_mode), "o"))


def _tar_stream(source: Path, name: str) -> Iterator[bytes]:
    """Tar ``source`` on a thread into a pipe; yield what comes out in chunks."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as tar:
                tar.add(source, arcname=name, recursive=True)
        except BaseException as exc:  # handed to the reader below
            failure.append(exc)

    worker = threading.Thread(target=produce, name="pfs-tar", daemon=True)
    worker.start()
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(CHUNK):
            yield chunk
    worker.join()
    if failure and not isinstance(failure[0], BrokenPipeError):
        log.error("tar of %s failed: %s", source, failure[0])
        raise failure[0]
