"""Merges and reverts in flight, so that a daemon killed half way through writing one
leaves its branch as it was.

A merge writes the plan into the branch's working copy file by file, then commits. A
crash in between would leave a half-written copy that the branch counts as changed: the
next unmount would commit half a merge. So before its first write a merge records a
marker ``<pool>/merges/<token>`` naming the branch and the head it started from (flushed
to disk), and removes it once its commit landed or its failure was undone. Merges only
start on a clean working copy (it held exactly the head), so at start-up, after
unfinished commits were settled, a marker whose branch is still at that head means the
working copy holds nothing but a half merge: it is dropped, and the next use makes it
again from the head. A branch whose head moved on took the merge's commit; its marker
just goes.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

from pfs_volume.durable import sync_folder, write_synced
from pfs_volume.errors import PfsError
from pfs_volume.repos import RepoService

log = logging.getLogger(__name__)

FOLDER = "merges"


class MergeMarker:
    """The marker of one merge or revert writing a working copy; ``clear`` when done."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def write(cls, repos: RepoService, repo: str, branch: str, head: str) -> MergeMarker:
        """Record that a merge into ``repo``/``branch`` at ``head`` starts writing now."""
        folder = repos.pool_folder(FOLDER)
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / secrets.token_hex(16)
        write_synced(path, {"repo": repo, "branch": branch, "head": head})
        sync_folder(folder)
        return cls(path)

    def clear(self) -> None:
        """Remove the marker (flushed to disk)."""
        self.path.unlink(missing_ok=True)
        sync_folder(self.path.parent)


def recover_merges(repos: RepoService) -> list[str]:
    """Drop the working copies that merges a crash interrupted left half written (see
    the module); run after ``RepoService.recover``. Returns their ``repo/branch``."""
    folder = repos.pool_folder(FOLDER)
    if not folder.is_dir():
        return []
    dropped: list[str] = []
    for marker in sorted(folder.iterdir()):
        if marker.is_symlink() or not marker.is_file():
            log.warning("merges/%s is not a marker file; left alone", marker.name)
            continue
        try:
            body = json.loads(marker.read_text())
            repo, branch = str(body["repo"]), str(body["branch"])
            record = repos.find_branch(repo, branch) if repos.repo_exists(repo) else None
            if record is not None and record.head == body["head"]:
                repos.drop_working_copy(repo, branch)
                dropped.append(f"{repo}/{branch}")
        except PfsError as exc:
            log.error("merge marker %s kept for the next start: %s", marker.name, exc)
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("merge marker %s unreadable, dropped: %s", marker.name, exc)
        marker.unlink(missing_ok=True)
    return dropped
