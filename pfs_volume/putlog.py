"""Puts in flight, so that a daemon killed in the middle of one leaves its branch clean.

A put's bytes go into an unnamed file in the working copy (``pfs_volume.upload``), so a
crash while they are written leaves no name behind. But making that file moved the
subvolume's generation, which is how pfs tells that a working copy changed: the branch
would then count as holding uncommitted changes (a put or reset refused, an empty
auto-commit at the next unmount). So before the first byte a put writes a marker
``<pool>/puts/<token>`` naming the branch and the head and clean generation it started
from. Before the file gets a name, the marker is replaced by one that also names the
temporary name that replacing a file goes through; it is removed once the file has its
name. Each step is flushed to disk. At start-up, with the branch still at that head and
clean generation:

* a marker of the first kind means the put died before naming anything: the working
  copy holds what its head holds, and its current generation is recorded as clean;
* a marker of the second kind whose temporary name is still there (a regular file)
  means the put died between linking it and renaming it over the target: the name is
  removed, and the copy again holds what its head holds;
* otherwise the file may have its name already, and the copy stays changed: its next
  commit takes the put, as the user asked.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from pfs_volume import safepath
from pfs_volume.durable import sync_folder, write_synced
from pfs_volume.errors import PfsError
from pfs_volume.repos import RepoService
from pfs_volume.upload import TEMP_PREFIX

log = logging.getLogger(__name__)

FOLDER = "puts"


class PutMarker:
    """The marker of one put in flight; ``clear`` it before the file gets a name."""

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path

    @classmethod
    def write(cls, repos: RepoService, repo: str, branch: str) -> PutMarker:
        """Record that a put to ``repo``/``branch`` starts now (flushed to disk)."""
        record = repos.get_branch(repo, branch)
        folder = repos.pool.root / FOLDER
        folder.mkdir(exist_ok=True)
        path = folder / secrets.token_hex(16)
        body = {
            "repo": repo,
            "branch": branch,
            "head": record.head,
            "generation": record.clean_generation,
        }
        write_synced(path, body)
        sync_folder(folder)
        return cls(path)

    def placing(self, folder: tuple[str, ...], temp: str) -> None:
        """Record that the file is about to be named, through ``temp`` in ``folder``
        (the target's folder, as names from the working copy's root)."""
        if self.path is None:
            return
        body = json.loads(self.path.read_text())
        body.update(phase="placing", folder=list(folder), temp=temp)
        staged = self.path.with_suffix(".new")
        write_synced(staged, body)
        os.replace(staged, self.path)
        sync_folder(self.path.parent)

    def clear(self) -> None:
        """Remove the marker (flushed to disk); again is a no-op."""
        if self.path is None:
            return
        self.path.unlink(missing_ok=True)
        sync_folder(self.path.parent)
        self.path = None


def recover_puts(repos: RepoService) -> list[str]:
    """Settle the branches of puts a crash interrupted (see the module); their names,
    ``repo/branch``. Markers that cannot be read are dropped with a warning."""
    folder = repos.pool.root / FOLDER
    if not folder.is_dir():
        return []
    settled: list[str] = []
    for marker in sorted(folder.iterdir()):
        try:
            body = json.loads(marker.read_text())
            repo, branch = str(body["repo"]), str(body["branch"])
            record = repos.store.get_branch(repo, branch)
            path = repos.branch_path(repo, branch)
            if (
                record is not None
                and record.head == body["head"]
                and record.clean_generation == body["generation"]
                and repos.pool.is_subvolume(path)
                and _unnamed(path, body)
            ):
                repos.store.set_clean_generation(
                    repo, branch, repos.pool.generation(path), record.head
                )
                settled.append(f"{repo}/{branch}")
        except PfsError as exc:
            log.error("put marker %s kept for the next start: %s", marker.name, exc)
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("put marker %s unreadable, dropped: %s", marker.name, exc)
        marker.unlink(missing_ok=True)
    return settled


def _unnamed(root: Path, body: dict[str, Any]) -> bool:
    """True when the put of this marker named nothing in the working copy at ``root``
    (after removing its temporary name, if that is there)."""
    if body.get("phase") != "placing":
        return True
    temp = str(body["temp"])
    if not temp.startswith(TEMP_PREFIX) or "/" in temp:
        raise ValueError(f"not a temporary name: {temp!r}")
    try:
        with safepath.closing(safepath.open_parent(root, [*body["folder"], temp])) as folder:
            info = safepath.lstat_at(folder, temp)
            if info is None or not stat.S_ISREG(info.st_mode):
                return False
            os.unlink(temp, dir_fd=folder)
            return True
    except PfsError:  # its folder is gone or not a folder: it was never named there
        return False
