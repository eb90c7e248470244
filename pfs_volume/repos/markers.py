"""Durable markers of node-local work a crash can cut off, so that start-up finds it
without looking at every commit.

* ``<pool>/gc/<token>``: a gc of one repo, written (flushed) before its commits are
  marked pruned and removed once every snapshot it pruned is deleted. Start-up deletes
  the snapshots of the listed commits that are pruned (a crash before the marking left
  them unpruned: they are kept).
* ``<pool>/receiving/<repo>.<commit>``: a receive of a commit's snapshot from a peer,
  written before the receive starts and removed once this node is recorded as a holder.
  Start-up settles only these commits (``Snapshots.settle_receive``), never a listing of
  ``commits/``.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from pfs_volume.durable import sync_folder, write_synced
from pfs_volume.repos.layout import PoolLayout

log = logging.getLogger(__name__)

GC_FOLDER = "gc"
RECEIVE_FOLDER = "receiving"


class Markers:
    """The marker files of one pool.

    Args:
        layout: where the pool's top folders are.
    """

    def __init__(self, layout: PoolLayout) -> None:
        self.layout = layout

    def _folder(self, kind: str) -> Path:
        folder = self.layout.folder(kind)
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def begin_gc(self, repo: str, commit_ids: list[str]) -> Path:
        """Record (flushed) that a gc of ``repo`` is about to prune ``commit_ids``."""
        folder = self._folder(GC_FOLDER)
        path = folder / secrets.token_hex(16)
        try:
            write_synced(path, {"repo": repo, "commits": commit_ids})
        except OSError:
            path.unlink(missing_ok=True)  # a full pool: the gc runs again on the reserve
            raise
        sync_folder(folder)
        return path

    def begin_receive(self, repo: str, commit_id: str) -> None:
        """Record (flushed) that a copy of the commit is about to be received here; a
        marker left by an earlier try stays (it says the same)."""
        folder = self._folder(RECEIVE_FOLDER)
        try:
            write_synced(folder / f"{repo}.{commit_id}", {"repo": repo, "commit": commit_id})
        except FileExistsError:
            return
        sync_folder(folder)

    def end_receive(self, repo: str, commit_id: str) -> None:
        """Remove the receive's marker (its copy is recorded, or settled)."""
        self.clear(self.layout.folder(RECEIVE_FOLDER) / f"{repo}.{commit_id}")

    def receiving(self, repo: str, commit_id: str) -> bool:
        """True while a receive of the commit is under way (or was cut off)."""
        return (self.layout.folder(RECEIVE_FOLDER) / f"{repo}.{commit_id}").exists()

    def clear(self, path: Path) -> None:
        """Remove a marker (flushed to disk); one already gone is fine."""
        try:
            path.unlink()
        except FileNotFoundError:
            return
        sync_folder(path.parent)

    def gcs(self) -> list[tuple[Path, str, list[str]]]:
        """The gc markers left: (marker, repo, commit ids)."""
        return [
            (path, str(body["repo"]), [str(c) for c in body["commits"]])
            for path, body in self._read(GC_FOLDER)
        ]

    def receives(self) -> list[tuple[Path, str, str]]:
        """The receive markers left: (marker, repo, commit id)."""
        return [
            (path, str(body["repo"]), str(body["commit"]))
            for path, body in self._read(RECEIVE_FOLDER)
        ]

    def _read(self, kind: str) -> list[tuple[Path, dict[str, Any]]]:
        """The markers of ``kind`` that read whole; an unreadable one (a crash while it
        was written, before its work began) is dropped with a warning."""
        folder = self.layout.folder(kind)
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.iterdir()):
            try:
                body = json.loads(path.read_text())
                if not isinstance(body, dict) or "repo" not in body:
                    raise ValueError("not a marker")
                found.append((path, body))
            except (OSError, ValueError) as exc:
                log.warning("%s/%s unreadable, dropped: %s", kind, path.name, exc)
                self.clear(path)
        return found
