"""The three-way decision of merge and revert, path by path (pure logic).

A tree is a map from path to ``Node``; folders are nodes too (their mode and owner are
theirs, their entries are other paths). Three trees take part: the base (the common
ancestor; for a revert the reverted commit), ours (the branch's head) and theirs (the
merged head; for a revert the reverted commit's parent). Only paths that at least one
side touched since the base are looked at (the caller finds them in time proportional
to the change), and for each:

* touched by one side only: that side's state;
* touched by both: if one side is in fact back at the base's state, the other's; if both
  arrived at the same state, that state; otherwise a conflict.

A result must also be a tree: an entry whose folder the result does not hold as a
folder (one side deleted the folder or made it a file or a link, the other added or
kept something inside) is a conflict too, named at the inner path, as git reports a
modify/delete. Nothing is dropped silently: every change of either side is in the
result or in a conflict. A strategy settles every conflict for one side; settling one
folder conflict can uncover another, so that repeats until the result is a tree (it
ends: each round moves a path to the strategy's side, and one side alone is a tree).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Side(Enum):
    """One of the three trees of a merge."""

    BASE = "base"
    OURS = "ours"
    THEIRS = "theirs"


@dataclass(frozen=True)
class Node:
    """What a tree holds at one path, as far as equality goes (not the file's bytes:
    ``Trees.same`` compares those).

    Attributes:
        kind: ``file``, ``dir``, ``symlink``, ``fifo``, ``socket``, ``char`` or ``block``.
        mode: the permission bits (``stat.S_IMODE``), setuid and sticky bits included.
        uid, gid: the owner.
        size: a file's size in bytes (0 for other kinds).
        target: a symlink's target (None for other kinds).
        rdev: a device node's device number (0 for other kinds).
        xattrs: its extended attributes as (name, value), sorted.
    """

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    target: str | None = None
    rdev: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    """Extended attributes (ACLs and file capabilities among them), sorted by name."""

    def describe(self) -> str:
        """``file``, ``folder``, ``symlink`` ...: the kind as a user says it."""
        return {"dir": "folder", "char": "device", "block": "device"}.get(self.kind, self.kind)


_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


def kind_of(mode: int) -> str:
    """The ``Node.kind`` of an ``st_mode``."""
    return _KINDS[stat.S_IFMT(mode)]


class Trees(Protocol):
    """The three trees, read lazily."""

    def node(self, side: Side, path: str) -> Node | None:
        """What ``side`` holds at ``path``; None when nothing (or no folder leads there)."""

    def same_bytes(self, a: Side, b: Side, path: str) -> bool:
        """True when the files two sides hold at ``path`` (both files, of one size) have
        the same bytes."""


def same(trees: Trees, a: Side, b: Side, path: str) -> bool:
    """True when two sides hold the same at ``path``: both nothing, or equal nodes with,
    for files, the same bytes."""
    first, second = trees.node(a, path), trees.node(b, path)
    if first != second:
        return False
    return first is None or first.kind != "file" or trees.same_bytes(a, b, path)


@dataclass(frozen=True)
class PathConflict:
    """A path the two sides changed in ways that cannot both hold.

    Attributes:
        path: the path (relative to the root).
        ours: what our side did there, e.g. ``modified``, ``deleted the folder d``.
        theirs: what their side did there.
    """

    path: str
    ours: str
    theirs: str

    def __str__(self) -> str:
        return f"{self.path} (ours: {self.ours}; theirs: {self.theirs})"


@dataclass(frozen=True)
class Plan:
    """What a three-way merge decided.

    Attributes:
        take: the paths where the result holds their side's state (ours holds the rest),
            sorted.
        conflicts: the paths no rule settles (after a strategy: empty), sorted by path.
    """

    take: list[str]
    conflicts: list[PathConflict]


def plan(
    trees: Trees,
    touched_ours: set[str],
    touched_theirs: set[str],
    strategy: Side | None = None,
    unsure: set[str] | frozenset[str] = frozenset(),
) -> Plan:
    """Decide every path either side touched since the base.

    Args:
        trees: the base, ours and theirs.
        touched_ours, touched_theirs: every path whose state may differ from the base's
            on that side (a superset is fine; a missing path is a change lost).
        strategy: ``Side.OURS`` or ``Side.THEIRS`` settles every conflict for that side;
            None leaves conflicts in the plan.
        unsure: paths where the base is not known (several merge bases disagree): each
            is settled only when both sides hold the same, else it is a conflict.
    Returns:
        The plan.
    """
    decided: dict[str, Side] = {}
    clashes: dict[str, PathConflict] = {}
    # In path order, so that a folder is read just before what is in it (folders are
    # opened from the nearest one open already: any depth costs one open a level).
    for path in sorted(touched_ours | touched_theirs | unsure):
        if path in unsure:
            agree = same(trees, Side.OURS, Side.THEIRS, path)
            side: Side | None = Side.OURS if agree else None
        else:
            side = _decide(trees, path, path in touched_ours, path in touched_theirs)
        if side is None:
            clashes[path] = PathConflict(
                path, describe(trees, Side.OURS, path), describe(trees, Side.THEIRS, path)
            )
            side = strategy or Side.OURS
        decided[path] = side
    while True:
        broken = _not_a_tree(trees, decided)
        for path, folder in broken:
            holder = decided[folder]
            if strategy is None:
                clashes.setdefault(path, _folder_conflict(trees, path, folder, holder))
            else:
                decided[path] = decided[folder] = strategy
        if strategy is None or not broken:
            break
    if strategy is not None:
        clashes.clear()
    take = sorted(p for p, side in decided.items() if side is Side.THEIRS)
    return Plan(take, sorted(clashes.values(), key=lambda c: c.path))


def _decide(trees: Trees, path: str, ours: bool, theirs: bool) -> Side | None:
    if not theirs:
        return Side.OURS
    if not ours:
        return Side.THEIRS
    if same(trees, Side.BASE, Side.THEIRS, path):
        return Side.OURS
    if same(trees, Side.BASE, Side.OURS, path):
        return Side.THEIRS
    if same(trees, Side.OURS, Side.THEIRS, path):
        return Side.OURS
    return None


def _not_a_tree(trees: Trees, decided: dict[str, Side]) -> list[tuple[str, str]]:
    """(path, its folder) for every decided path the result holds while it holds no
    folder at the path's folder. Only folders someone touched can be missing: an
    untouched one is the same folder on every side."""
    broken = []
    for path, side in decided.items():
        folder = path.rpartition("/")[0]
        if not folder or folder not in decided or trees.node(side, path) is None:
            continue
        holder = trees.node(decided[folder], folder)
        if holder is None or holder.kind != "dir":
            broken.append((path, folder))
    return sorted(broken)


def _folder_conflict(trees: Trees, path: str, folder: str, holder: Side) -> PathConflict:
    inner = Side.THEIRS if holder is Side.OURS else Side.OURS
    outer_text = f"{describe(trees, holder, folder)} the folder {folder}"
    inner_text = describe(trees, inner, path)
    if holder is Side.OURS:
        return PathConflict(path, outer_text, inner_text)
    return PathConflict(path, inner_text, outer_text)


def describe(trees: Trees, side: Side, path: str) -> str:
    """What ``side`` did at ``path`` since the base, in a few words."""
    before, after = trees.node(Side.BASE, path), trees.node(side, path)
    if before is None and after is None:
        return "left it absent"
    if before is None:
        assert after is not None
        return f"added a {after.describe()}"
    if after is None:
        return "deleted"
    if before.kind != after.kind:
        return f"replaced a {before.describe()} with a {after.describe()}"
    if same(trees, Side.BASE, side, path):
        return "kept it"
    done = []
    data = (before.size, before.target, before.rdev) != (after.size, after.target, after.rdev)
    if data or (after.kind == "file" and trees.same_bytes(Side.BASE, side, path) is False):
        done.append("modified")
    if before.mode != after.mode:
        done.append(f"changed its mode {before.mode:o} -> {after.mode:o}")
    if (before.uid, before.gid) != (after.uid, after.gid):
        done.append(f"changed its owner to {after.uid}:{after.gid}")
    if before.xattrs != after.xattrs:
        done.append("changed its extended attributes")
    return " and ".join(done) or "modified"
