"""Where things live in a node's pool: paths only.

<pool>/repos/<repo>/branches/<branch>   writable working copy (a subvolume)
<pool>/repos/<repo>/commits/<id>        read-only snapshot, one per commit
<pool>/repos/<repo>/detached/           working copies set aside, never deleted
<pool>/incoming/                        partial receives and imports; emptied at start
<pool>/retired/                         working copies of repos deleted elsewhere
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pfs_volume.meta.change_log import COPY, SNAPSHOT, Part

PLACES = {"branches": COPY, "commits": SNAPSHOT}
"""The folders of a repo's folder whose entries are one part each (see the table above)."""
IMPORT_MARKER = ".pfs-import"
"""In a repo folder that an import moved into place before its records were written."""


class PoolLayout:
    """The places of repos, branches and commits in one pool; makes the top folders.

    Args:
        root: the pool's mount point.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repos_dir = root / "repos"
        self.incoming_dir = root / "incoming"
        self.retired_dir = root / "retired"
        self.repos_dir.mkdir(exist_ok=True)
        self.incoming_dir.mkdir(exist_ok=True)

    def folder(self, name: str) -> Path:
        """A top folder of the pool that another component keeps its own files in (it
        may not exist yet)."""
        return self.root / name

    def repo_dir(self, repo: str) -> Path:
        """The folder that holds a repo's working copies and snapshots."""
        return self.repos_dir / repo

    def branch_path(self, repo: str, branch: str) -> Path:
        """Where a branch's working copy lives (it may not exist yet)."""
        return self.repos_dir / repo / "branches" / branch

    def commit_path(self, repo: str, commit_id: str) -> Path:
        """Where a commit's read-only snapshot lives."""
        return self.repos_dir / repo / "commits" / commit_id

    def detached_path(self, repo: str, branch: str, base: str, when: datetime) -> Path:
        """Where a working copy of ``branch`` made from commit ``base`` is set aside."""
        return self.repo_dir(repo) / "detached" / f"{branch}.{base}.{when:%Y%m%dT%H%M%S%f}"

    def parts_at(self, paths: Iterable[Path]) -> tuple[frozenset[str], frozenset[Part]] | None:
        """What ``paths`` are to List: (the repos whose folders hold some of them
        anywhere but at a working copy's or a snapshot's own place, the working copies
        and snapshots among them as ``Part``); None when one is ``repos/`` itself or a
        folder above it (it may hold every repo). Paths elsewhere (``incoming/``,
        ``retired/``) are neither."""
        repos: set[str] = set()
        parts: set[Part] = set()
        for path in paths:
            if path.is_relative_to(self.repos_dir):
                place = path.relative_to(self.repos_dir).parts
                if not place:
                    return None
                if len(place) == 3 and place[1] in PLACES:
                    parts.add((place[0], PLACES[place[1]], place[2]))
                else:
                    repos.add(place[0])
            elif self.repos_dir.is_relative_to(path):
                return None
        return frozenset(repos), frozenset(parts)

    def retired_path(self, repo: str, when: datetime) -> Path:
        """Where the working copies of a repo deleted elsewhere are moved."""
        return self.retired_dir / f"{repo}.{when:%Y%m%dT%H%M%S}"


def children(folder: Path) -> list[Path]:
    """The entries of ``folder``, or none when it is not a folder."""
    return list(folder.iterdir()) if folder.is_dir() else []
