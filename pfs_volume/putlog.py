"""Puts in flight, so that a daemon killed in the middle of one leaves its branch clean
or holding the whole new file, never a partial file or a stray name.

A put's bytes are staged outside the working copy (``pfs_volume.upload``): a crash
while they come in leaves the working copy untouched (its generation too), and only a
staged file, which start-up removes. Only the last step touches the working copy: it
makes an unnamed file there, clones the staged extents into it, makes missing folders
and gives the file its name. Making that unnamed file moves the subvolume's generation,
which is how pfs tells that a working copy changed: after a crash in that step the
branch would count as holding uncommitted changes (a put or reset refused, an empty
auto-commit at the next unmount). So just before the step a put writes a marker
``<pool>/puts/<token>``, flushed to disk, naming the branch, the head and clean
generation it started from, and the step's ``Placement``: the folders it will make, the
target's name, the temporary name a replacement goes through and the inode it replaces.
The marker is removed once the file has its name.

At start-up, with the branch still at that head and clean generation, the tree alone
tells how far the step went (``upload.unplace``):

* nothing was at the target, and nothing is: the file never got its name; the folders
  the put made (empty) are removed;
* a file was replaced, and the target is still that inode: it was not replaced; the
  temporary name, if there, is removed;

and then the working copy holds what its head holds, and its current generation is
recorded as clean. Otherwise the file has its name, whole: the marker stays until the
put's commit is made, so a crash before that commit is finished here, by committing the
put as the user asked (its own answer never came), unless a container has the branch
mounted by then (its Unmount commits it). Without this a branch would be left holding a
change no commit holds, and every later put and rm to it refused until someone ran
``pfs commit``. A marker whose head or clean generation no longer match (the put's
commit was made) is stale and dropped.

Removing the marker is not flushed: a marker that comes back after a power loss is
judged from the tree like any other, and gives the same answer.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pfs_volume import safepath
from pfs_volume.durable import sync_folder, write_synced
from pfs_volume.errors import PfsError
from pfs_volume.repos import RepoService
from pfs_volume.upload import Placement, unplace

log = logging.getLogger(__name__)

FOLDER = "puts"
PUT_ORIGIN = "put"
"""The origin of a commit a put made."""


class PutMarker:
    """The marker of one put whose file is being moved into a working copy."""

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path

    @classmethod
    def write(cls, repos: RepoService, repo: str, branch: str, placement: Placement) -> PutMarker:
        """Record (flushed to disk) that a put to ``repo``/``branch`` is about to do
        ``placement`` in its working copy.

        Raises:
            NotFound: no such branch. OSError: the marker cannot be written.
        """
        record = repos.get_branch(repo, branch)
        folder = repos.pool_folder(FOLDER)
        folder.mkdir(exist_ok=True)
        path = folder / secrets.token_hex(16)
        body = {
            "repo": repo,
            "branch": branch,
            "head": record.head,
            "generation": record.clean_generation,
            "placement": asdict(placement),
        }
        write_synced(path, body)
        sync_folder(folder)
        return cls(path)

    def clear(self) -> None:
        """Remove the marker (not flushed: see the module); again is a no-op."""
        if self.path is None:
            return
        self.path.unlink(missing_ok=True)
        self.path = None


def recover_puts(repos: RepoService) -> list[str]:
    """Settle the branches of puts a crash interrupted (see the module); their names,
    ``repo/branch``, for those left clean. Markers that cannot be read are dropped with
    a warning; a marker whose branch cannot be read (the store failed) is kept for the
    next start."""
    folder = repos.pool_folder(FOLDER)
    if not folder.is_dir():
        return []
    settled: list[str] = []
    for marker in sorted(folder.iterdir()):
        try:
            body = json.loads(marker.read_text())
            repo, branch = str(body["repo"]), str(body["branch"])
            placement = _placement(body["placement"])
            record = repos.find_branch(repo, branch)
            path = repos.branch_path(repo, branch)
            if (
                record is not None
                and record.head == body["head"]
                and record.clean_generation == body["generation"]
                and repos.is_working_copy(repo, branch)
            ):
                if _unplaced(path, placement, f"{repo}/{branch}"):
                    repos.mark_clean(repo, branch, record.head)
                    settled.append(f"{repo}/{branch}")
                else:
                    _commit_landed_put(repos, repo, branch, placement)
        except PfsError as exc:
            log.error("put marker %s kept for the next start: %s", marker.name, exc)
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("put marker %s unreadable, dropped: %s", marker.name, exc)
        marker.unlink(missing_ok=True)
    return settled


def _commit_landed_put(repos: RepoService, repo: str, branch: str, placement: Placement) -> None:
    """Commit a put whose file got its name before the daemon was killed (see the module).

    Raises:
        PfsError: the commit failed (the marker is kept for the next start).
    """
    shown = safepath.shown((*placement.folder, *placement.made, placement.name))
    if any(m.branch == branch for m in repos.list_mounts(repo)):
        log.info(
            "repo=%s branch=%s put %s landed before a crash; the branch is mounted, so its "
            "last Unmount commits it",
            repo,
            branch,
            shown,
        )
        return
    made = repos.commit_working_copy(
        repo,
        branch,
        f"put {shown} (committed at start-up: pfs was killed before the put's commit)",
        PUT_ORIGIN,
    )
    log.warning(
        "repo=%s branch=%s commit=%s: put %s had landed when pfs was killed; committed",
        repo,
        branch,
        made.id if made else None,
        shown,
    )


def _placement(raw: Any) -> Placement:
    """A marker's placement, checked for types.

    Raises:
        TypeError, KeyError: not a placement.
    """
    names = [*raw["folder"], *raw["made"], raw["name"]]
    temp, replaced = raw["temp"], raw["replaced"]
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be strings: {names!r}")
    if not (temp is None or isinstance(temp, str)) or not (
        replaced is None or isinstance(replaced, int)
    ):
        raise TypeError(f"not a placement: {raw!r}")
    return Placement(tuple(raw["folder"]), tuple(raw["made"]), raw["name"], temp, replaced)


def _unplaced(root: Path, placement: Placement, branch: str) -> bool:
    """``unplace``, with a tree it cannot walk (something else changed it) counted as
    changed: the copy then stays changed, and nothing is removed."""
    try:
        return unplace(root, placement)
    except (PfsError, OSError) as exc:
        log.warning("branch=%s an interrupted put's folder changed; left as is: %s", branch, exc)
        return False
