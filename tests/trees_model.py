"""A small pure model of file trees, for checking merge and revert against.

A tree is a dict from path to ``(kind, mode, data)``: ``data`` is a file's bytes, a
symlink's target, and None for a folder or a FIFO. The model merges whole trees path by
path, without knowing anything of btrfs, send streams or which paths changed, so a test
that runs the same edits through pfs and through the model checks that pfs looks at
every path that matters and decides each one right.

``Edit``s are what a user (or a container) does: write, delete, rename, chmod, mkdir,
symlink, mkfifo; each applies both to the model and to a real folder.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

Entry = tuple[str, int, bytes | str | None]
Tree = dict[str, Entry]

OURS, THEIRS = "ours", "theirs"


def read_tree(root: Path) -> Tree:
    """The model of a real folder (links read, never followed)."""
    tree: Tree = {"": ("dir", stat.S_IMODE(os.lstat(root).st_mode), None)}
    for folder, dirs, files, fd in os.fwalk(root):
        relative = os.path.relpath(folder, root)
        for name in [*dirs, *files]:
            path = name if relative == "." else f"{relative}/{name}"
            info = os.lstat(name, dir_fd=fd)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                tree[path] = ("dir", mode, None)
            elif stat.S_ISLNK(info.st_mode):
                tree[path] = ("symlink", 0o777, os.readlink(name, dir_fd=fd))
            elif stat.S_ISFIFO(info.st_mode):
                tree[path] = ("fifo", mode, None)
            else:
                with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as f:
                    tree[path] = ("file", mode, f.read())
    return tree


def parent(path: str) -> str:
    return path.rpartition("/")[0]


def merge(
    base: Tree, ours: Tree, theirs: Tree, strategy: str | None = None
) -> tuple[Tree, set[str]]:
    """The three-way merge of whole trees: (result, conflicting paths); with a strategy
    the conflicts are settled for that side and the set is empty."""
    sides = {OURS: ours, THEIRS: theirs}
    decided: dict[str, str] = {}
    conflicts: set[str] = set()
    for path in set(base) | set(ours) | set(theirs):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            decided[path] = OURS
        elif o == b:
            decided[path] = THEIRS
        else:
            conflicts.add(path)
            decided[path] = strategy or OURS
    while True:
        broken = []
        for path, side in decided.items():
            folder = parent(path)
            if path in sides[side] and folder:
                holder = sides[decided[folder]].get(folder)
                if holder is None or holder[0] != "dir":
                    broken.append((path, folder))
        for path, folder in broken:
            if strategy is None:
                conflicts.add(path)
            else:
                decided[path] = decided[folder] = strategy
        if strategy is None or not broken:
            break
    result = {p: sides[s][p] for p, s in decided.items() if p in sides[s]}
    return result, (set() if strategy else conflicts)


@dataclass(frozen=True)
class Edit:
    """One change to a tree: ``op`` with a path and, for some, a second value."""

    op: str  # write, delete, rename, chmod, mkdir, symlink, fifo
    path: str
    value: bytes | str | int | None = None

    def apply_model(self, tree: Tree) -> None:
        """Change the model as the real edit changes the folder."""
        if self.op == "write":
            mode = tree[self.path][1] if self.path in tree else 0o644
            assert isinstance(self.value, bytes)
            tree[self.path] = ("file", mode, self.value)
        elif self.op == "mkdir":
            tree[self.path] = ("dir", 0o755, None)
        elif self.op == "symlink":
            assert isinstance(self.value, str)
            tree[self.path] = ("symlink", 0o777, self.value)
        elif self.op == "fifo":
            tree[self.path] = ("fifo", 0o644, None)
        elif self.op == "chmod":
            kind, _, data = tree[self.path]
            assert isinstance(self.value, int)
            tree[self.path] = (kind, self.value, data)
        elif self.op == "delete":
            for path in _under(tree, self.path):
                del tree[path]
        elif self.op == "rename":
            assert isinstance(self.value, str)
            for path in _under(tree, self.path):
                tree[self.value + path[len(self.path) :]] = tree.pop(path)

    def apply_disk(self, root: Path) -> None:
        """Make the edit in a real folder (every path's folders are real folders)."""
        full = root / self.path
        if self.op == "write":
            assert isinstance(self.value, bytes)
            new = not full.exists()
            full.write_bytes(self.value)
            if new:
                full.chmod(0o644)
        elif self.op == "mkdir":
            full.mkdir(0o755)
            full.chmod(0o755)
        elif self.op == "symlink":
            assert isinstance(self.value, str)
            full.symlink_to(self.value)
        elif self.op == "fifo":
            os.mkfifo(full, 0o644)
            full.chmod(0o644)
        elif self.op == "chmod":
            assert isinstance(self.value, int)
            full.chmod(self.value)
        elif self.op == "delete":
            if full.is_dir() and not full.is_symlink():
                shutil.rmtree(full)
            else:
                full.unlink()
        elif self.op == "rename":
            assert isinstance(self.value, str)
            full.rename(root / self.value)


def _under(tree: Tree, path: str) -> list[str]:
    return [p for p in tree if p == path or p.startswith(path + "/")]


def draw_edits(draw: Callable[[st.SearchStrategy[Any]], Any], tree: Tree, count: int) -> list[Edit]:
    """``count`` random edits that each make sense after the ones before, starting
    from ``tree`` (which is left as it was). ``draw`` is hypothesis' ``data.draw``."""
    model = {"": ROOT, **tree}
    edits = []
    for _ in range(count):
        edit = _draw_edit(draw, model)
        edit.apply_model(model)
        edits.append(edit)
    return edits


def _draw_edit(draw: Callable[[st.SearchStrategy[Any]], Any], model: Tree) -> Edit:
    inner = (p for p, e in model.items() if p and e[0] == "dir" and p.count("/") < 2)
    folders = ["", *sorted(inner)]
    existing = sorted(p for p in model if p)
    files = [p for p in existing if model[p][0] == "file"]
    dirs = [p for p in existing if model[p][0] == "dir"]
    ops = ["write", "mkdir", "mkdir", "symlink", "fifo"]
    if existing:
        ops += ["delete", "rename", "chmod"]
    if dirs:
        ops += ["delete", "rename", "rename", "chmod", "write", "write"]
    if files:
        ops += ["write", "write"]
    op = draw(st.sampled_from(ops))
    if op == "chmod" and draw(st.integers(0, 5)) == 0:
        return Edit(op, "", draw(st.sampled_from(DIR_MODES)))  # the volume's root
    if op in ("delete", "rename", "chmod"):
        # Folders half the time: folder-level changes are where merges lose data.
        path = draw(st.sampled_from(dirs if dirs and draw(st.booleans()) else existing))
    elif op == "write" and files and draw(st.booleans()):
        path = draw(st.sampled_from(files))
    else:
        path = _new_path(draw, model, folders)
    if op == "write":
        return Edit(op, path, draw(st.sampled_from(CONTENTS)))
    if op == "symlink":
        return Edit(op, path, draw(st.sampled_from(LINK_TARGETS)))
    if op == "chmod":
        if model[path][0] == "symlink":
            return Edit("delete", path)
        modes = DIR_MODES if model[path][0] == "dir" else FILE_MODES
        return Edit(op, path, draw(st.sampled_from(modes)))
    if op == "rename":
        outside = [f for f in folders if f != path and not f.startswith(path + "/")]
        return Edit(op, path, _new_path(draw, model, outside))
    return Edit(op, path)


def _new_path(
    draw: Callable[[st.SearchStrategy[Any]], Any], model: Tree, folders: list[str]
) -> str:
    inner = [f for f in folders if f]
    folder = draw(st.sampled_from(inner if inner and draw(st.booleans()) else folders))
    free = [n for n in NAMES if (f"{folder}/{n}" if folder else n) not in model]
    if not free:
        if folder:
            return _new_path(draw, model, [""])
        return next(f"n{i}" for i in range(len(model) + 1) if f"n{i}" not in model)
    name = draw(st.sampled_from(free))
    return f"{folder}/{name}" if folder else name


ROOT: Entry = ("dir", 0o755, None)
"""A new working copy's root folder."""
NAMES = ["a", "b", "c", "d d", "caf\udce9"]
"""Names of entries: a space, and bytes that are not UTF-8 (a surrogate escape)."""
CONTENTS = [b"1", b"2", b"3", b""]
LINK_TARGETS = ["/etc/passwd", "../a", "a", "/", "b/c"]
DIR_MODES = [0o755, 0o700, 0o750]
FILE_MODES = [0o644, 0o600, 0o755, 0o4755]
