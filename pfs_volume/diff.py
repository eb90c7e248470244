"""What changed between two commits, from a ``btrfs receive --dump`` listing (pure logic).

``btrfs send --no-data -p A B | btrfs receive --dump`` prints the operations that turn
snapshot A into B, one per line, in time proportional to the change (see
``pfs_volume/btrfs/changes.py``, which runs it). They are replayed here on a model of
the tree that holds only the entries the operations touch, so the cost stays
proportional to the change too. The dump's quirks, as btrfs-progs 6.2 prints them:

* Every path is prefixed with ``./NAME`` (the sent subvolume's name, given by the first
  line, ``snapshot`` or ``subvol``); the root itself is ``./NAME/``. ``link``'s ``dest``
  is relative to the subvolume, ``rename``'s ``dest`` carries the prefix.
* Paths are C-escaped: ``\\ `` for a space, ``\\\\``, ``\\n``, ``\\t`` and the other named
  escapes, and ``\\ooo`` (octal) for every other byte outside printable ASCII, so a
  UTF-8 ``é`` is ``\\303\\251``. A path's escaped text never holds a space or a newline.
* New inodes are made under temporary names ``oINO-GEN-IDX`` at the root and renamed
  into place; a directory being deleted may first be renamed to such a name, and its
  entries are then unlinked under it. A file rename is sometimes ``rename`` and
  sometimes ``link NEW dest=OLD`` followed by ``unlink OLD``.
* ``set_xattr`` prints the attribute's value raw (up to its first NUL byte), so a
  value with a newline spills onto following lines, the last of which ends with
  `` len=N``; those lines are skipped. A value crafted to end a line with `` len=N``
  and go on like further operations cannot be told from them: the dump, and so the
  commits' contents, are trusted. (Reading the binary send stream instead of the
  dump would lift that.)

What is reported, sorted by path: one ``Change`` for each path of the child that is
new or changed, and one for each path of the parent that is gone:

* ``added`` / ``deleted``: files, directories, symlinks and other entries, each one,
  a deleted one at its path in the parent (under a directory renamed in the same diff
  that is the directory's old path), every other kind at its path in the child;
  also everything inside an added or deleted directory (the dump lists those one by
  one anyway). A new hard link to an existing file is an added path; removing one
  name of a file that keeps another is a deleted path.
* ``renamed`` (with ``old_path``): an entry that kept its inode but moved. For a
  renamed directory only the directory is reported, not everything under it (that
  would cost a walk of the tree); entries under it that changed are reported at their
  new paths. ``modified`` is set when a renamed file also changed. The dump does not
  tell apart the names of a hard-linked file: when one of them moves and another goes,
  the name btrfs linked from counts as moved (either reading gives the same tree), and
  a change in place to such a file is reported under the one name the dump uses.
* ``modified``: content (``update_extent``, ``write``, ``clone``, ``truncate``),
  mode, owner or extended attributes changed, or the entry was replaced by a new
  inode at the same path (an editor's save-by-rename, a file that became a
  directory; a directory replaced by a directory only when its mode or owner
  differ). Timestamps: btrfs sends ``utimes`` whenever an inode changed at all,
  ctime included, so ``utimes`` alone counts only when a ``metadata_changed`` check
  finds the modification time really moved. A directory's times never count: a
  directory is not "modified" because entries came or went in it (even ones that
  came and went again, which the dump does not show). The root is never reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pfs_volume.dump import HEADER_OPS, DumpRecord, parse_dump
from pfs_volume.errors import DumpFormatError

ChangeKind = Literal["added", "modified", "deleted", "renamed"]

MetadataChanged = Callable[[str, str], bool]
"""``(path in the parent, path in the child) -> True`` when the entry's mode or owner
differ between the two snapshots, or its modification time unless it is a directory.
Asked only of entries the dump cannot decide alone (``utimes`` and nothing else; a
directory deleted and made again), so it costs in proportion to the change."""

CREATE_OPS = frozenset({"mkfile", "mkdir", "mknod", "mkfifo", "mksock", "symlink"})


@dataclass(frozen=True, order=True)
class Change:
    """One path that differs between two commits.

    Attributes:
        path: the path relative to the commit's root (for ``deleted``, where it was).
            Bytes that are not UTF-8 are kept as surrogate escapes (``os.fsdecode``).
        kind: ``added``, ``modified``, ``deleted`` or ``renamed``.
        old_path: for ``renamed``, where the entry was; None otherwise.
        modified: for ``renamed``, whether the entry also changed; False otherwise.
    """

    path: str
    kind: ChangeKind
    old_path: str | None = None
    modified: bool = False

    def __post_init__(self) -> None:
        if (self.kind == "renamed") != (self.old_path is not None):
            raise ValueError("old_path is given exactly for renamed changes")
        if self.modified and self.kind != "renamed":
            raise ValueError("the modified flag is for renamed changes only")


class _Inode:
    """A file or directory; several entries share one when it has hard links."""

    def __init__(self, *, existed: bool) -> None:
        self.existed = existed
        self.changed = False
        self.utimes = False
        self.is_dir = False
        self.dropped_names: list[str] = []
        """Where its entries were in the parent, for the ones removed since."""


_ABSENT: object = object()


@dataclass(eq=False)
class _Entry:
    """A name in a directory, as far as the dump touched it.

    ``origin`` is the path the entry had in the parent snapshot, None for one made in
    this diff; ``origin_parent`` the directory it was in there (which may have moved
    since). ``children`` holds only the entries touched; a name that is not there
    is untouched since the parent (in a directory that existed there) or absent. None
    marks a name whose entry went away.
    """

    inode: _Inode
    origin: str | None
    name: str = ""
    parent: _Entry | None = None
    origin_parent: _Entry | None = None
    children: dict[str, _Entry | None] = field(default_factory=dict)
    entries_changed: bool = False


class _Tree:
    """The receiving side's tree, replayed operation by operation."""

    def __init__(self, *, full: bool) -> None:
        self.root = _Entry(_Inode(existed=not full), None if full else "")
        self.removed: list[_Entry] = []

    def lookup(self, path: str) -> _Entry:
        node = self.root
        for name in _components(path):
            child = node.children.get(name, _ABSENT)
            if child is _ABSENT:
                if node.origin is None:
                    raise DumpFormatError(f"dump uses {path!r}, which does not exist")
                child = _Entry(_Inode(existed=True), _join(node.origin, name), name, node, node)
                node.children[name] = child
            if not isinstance(child, _Entry):
                raise DumpFormatError(f"dump uses {path!r} after it went away")
            node = child
        return node

    def attach(self, entry: _Entry, path: str) -> None:
        parent_path, _, name = path.rpartition("/")
        parent = self.lookup(parent_path)
        if isinstance(parent.children.get(name), _Entry):
            raise DumpFormatError(f"dump creates {path!r}, which exists")
        entry.name, entry.parent = name, parent
        parent.children[name] = entry
        parent.entries_changed = True

    def detach(self, path: str) -> _Entry:
        entry = self.lookup(path)
        if entry.parent is None:
            raise DumpFormatError("dump moves or removes the subvolume's root")
        entry.parent.children[entry.name] = None
        entry.parent.entries_changed = True
        entry.parent = None
        return entry

    def apply(self, record: DumpRecord) -> None:
        op, path = record.op, record.path
        if op in HEADER_OPS:
            return
        if op in CREATE_OPS:
            inode = _Inode(existed=False)
            inode.is_dir = op == "mkdir"
            self.attach(_Entry(inode, None), path)
        elif op == "rename":
            self.attach(self.detach(path), _required(record))
        elif op == "link":
            self.attach(_Entry(self.lookup(_required(record)).inode, None), path)
        elif op in ("unlink", "rmdir"):
            entry = self.detach(path)
            entry.inode.is_dir = op == "rmdir"
            self.removed.append(entry)
            if entry.origin is not None:
                entry.inode.dropped_names.append(entry.origin)
        elif op == "utimes":
            self.lookup(path).inode.utimes = True
        else:
            # write, update_extent, clone, truncate, chmod, chown, set_xattr,
            # remove_xattr; and whatever a newer btrfs may add: it changed the entry.
            self.lookup(path).inode.changed = True

    def present(self) -> Iterator[tuple[str, _Entry]]:
        """Every entry the dump touched that is in the child, with its path there."""
        stack: list[tuple[str, _Entry]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            for name, child in node.children.items():
                if child is not None:
                    child_path = _join(path, name)
                    yield child_path, child
                    stack.append((child_path, child))


def changes_from_dump(
    lines: Iterable[str], *, metadata_changed: MetadataChanged | None = None
) -> list[Change]:
    """The changes a ``btrfs receive --dump`` listing describes, one per path.

    Args:
        lines: the dump of ``btrfs send --no-data [-p PARENT] CHILD``, line by line.
        metadata_changed: the check for entries that the dump alone cannot decide.
            Without it they count as unchanged (btrfs sends ``utimes`` for a ctime
            change alone).
    Returns:
        The changes, sorted by path (see the module's docstring for what is reported).
    Raises:
        DumpFormatError: when the listing cannot be followed.
    """
    records = parse_dump(lines)
    header = next(records)
    tree = _Tree(full=header.op == "subvol")
    for record in records:
        tree.apply(record)

    found: dict[str, Change] = {}
    slots: dict[tuple[_Entry, str], str] = {}
    relinked: list[tuple[str, _Entry]] = []
    new_dirs: set[str] = set()
    for path, entry in tree.present():
        assert entry.parent is not None
        slots[(entry.parent, entry.name)] = path
        if entry.origin is None and entry.inode.existed:
            relinked.append((path, entry))
        elif entry.origin is None:
            found[path] = Change(path, "added")
            if entry.inode.is_dir:
                new_dirs.add(path)
        else:
            moved = entry.parent is not entry.origin_parent or entry.name != _base(entry.origin)
            _record(found, entry, entry.origin, path, metadata_changed, moved=moved)
    for path, entry in relinked:
        old = _take_dropped_name(entry.inode)
        if old is None:
            found[path] = Change(path, "added")
        else:
            _record(found, entry, old, path, metadata_changed, moved=old != path)

    deleted: list[Change] = []
    for entry in tree.removed:
        if entry.origin is None or entry.origin not in entry.inode.dropped_names:
            continue  # made in this diff, or its name was taken up as a rename's source
        # What is now where the entry was (its directory may have moved since).
        assert entry.origin_parent is not None
        now = slots.get((entry.origin_parent, _base(entry.origin)))
        there = found.get(now) if now is not None else None
        if now is None or there is None:
            deleted.append(Change(entry.origin, "deleted"))
        elif there.kind == "added" and not (entry.inode.is_dir and now in new_dirs):
            found[now] = Change(now, "modified")  # replaced by a new inode
        elif there.kind == "added":
            # A directory deleted and made again: the same directory, unless its mode
            # or owner differ; its entries are reported one by one.
            if metadata_changed is not None and metadata_changed(entry.origin, now):
                found[now] = Change(now, "modified")
            else:
                del found[now]
    return sorted([*found.values(), *deleted])


def _record(
    found: dict[str, Change],
    entry: _Entry,
    old: str,
    path: str,
    metadata_changed: MetadataChanged | None,
    *,
    moved: bool,
) -> None:
    """Report an entry that was in the parent at ``old`` and is now at ``path``;
    ``moved`` when it moved itself, not only with a renamed directory."""
    modified = _is_modified(entry, old, path, metadata_changed)
    if moved and old != path:
        found[path] = Change(path, "renamed", old, modified)
    elif modified:
        found[path] = Change(path, "modified")


def _is_modified(
    entry: _Entry, old: str, new: str, metadata_changed: MetadataChanged | None
) -> bool:
    """Whether an entry that was in the parent changed (besides moving)."""
    if entry.inode.changed:
        return True
    if not entry.inode.utimes or entry.entries_changed or metadata_changed is None:
        return False
    return metadata_changed(old, new)


def _take_dropped_name(inode: _Inode) -> str | None:
    """Pair a new name of an existing inode with one of its removed names: a rename."""
    return inode.dropped_names.pop(0) if inode.dropped_names else None


def _required(record: DumpRecord) -> str:
    if record.dest is None:
        raise DumpFormatError(f"{record.op} of {record.path!r} has no dest")
    return record.dest


def _base(path: str) -> str:
    return path.rpartition("/")[2]


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
