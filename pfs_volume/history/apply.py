"""Writing a merge's plan into a working copy: for each path the plan takes from their
side, make the working copy hold exactly what their snapshot holds there.

The working copy holds exactly our side (merge and revert refuse a dirty one), and
both it and the snapshot hold what containers wrote: every folder is opened without
following a link (``FolderWalker``), entries are created with ``O_EXCL``/``mkdirat``
semantics in a folder descriptor, and special files are made as what they are (a
symlink with ``symlink``, a FIFO with ``mkfifo``, a device or socket with ``mknod``),
never read. Files are copied by reflink (O(1) on btrfs), with their mode, owner and
modification time.

Removals go first, deepest paths first; then creations, shallowest first, so every
folder exists before what goes in it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pfs_volume.btrfs.ioctl import clone_file
from pfs_volume.errors import CloneRefused, Conflict, StorageError
from pfs_volume.failpoints import failpoint
from pfs_volume.filenames import printable
from pfs_volume.history.snapshots import FolderWalker, SnapshotTrees, at, read_xattrs, split
from pfs_volume.history.threeway import Node, Side, kind_of
from pfs_volume.safepath import FOLDER_FLAGS, FolderChain, entries, remove_tree

_CHANGED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.EISDIR, errno.ENOTEMPTY)
"""What a call fails with when the working copy (which held exactly our side) changed
under the merge: a container writing there."""
_SPECIAL = {
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
}


def apply_plan(work: Path, trees: SnapshotTrees, take: list[str]) -> None:
    """Make ``work`` (holding our side) hold their side at every path of ``take``.

    Raises:
        StorageError: when the working copy does not hold what our side holds, or a
            file system call fails.
    """
    try:
        _apply(work, trees, take)
    except OSError as exc:
        where = f" at {printable(exc.filename)}" if isinstance(exc.filename, str) else ""
        if exc.errno in _CHANGED:
            raise Conflict(
                f"the working copy changed while the merge wrote it{where} ({exc.strerror}):"
                " something writes to it; nothing was committed, the branch is left as it was"
            ) from exc
        raise StorageError(
            f"writing the merge into the working copy failed{where}: {exc.strerror}; the "
            "branch is left as it was"
        ) from exc


def _apply(work: Path, trees: SnapshotTrees, take: list[str]) -> None:
    with FolderWalker(work, read_only=False) as target:
        source = trees.walkers.get(Side.THEIRS)
        for path in sorted(take, key=_depth, reverse=True):
            ours, theirs = trees.node(Side.OURS, path), trees.node(Side.THEIRS, path)
            if ours is not None and not (ours.kind == "dir" and theirs and theirs.kind == "dir"):
                _remove(target, path, ours)
        failpoint("merge.during_apply")
        for path in sorted(take, key=_depth):
            theirs = trees.node(Side.THEIRS, path)
            if theirs is not None:
                _create(target, source, path, theirs)


def removals(trees: SnapshotTrees, take: list[str]) -> list[str]:
    """The folders the plan removes whole (not those inside another such one)."""
    found: list[str] = []
    for path in sorted(take, key=_depth):
        ours, theirs = trees.node(Side.OURS, path), trees.node(Side.THEIRS, path)
        if ours is None or ours.kind != "dir" or (theirs is not None and theirs.kind == "dir"):
            continue
        if not any(path.startswith(done + "/") for done in found):
            found.append(path)
    return found


def refuse_nested_subvolumes(work: Path, folders: list[str]) -> None:
    """Refuse, before anything is written, to remove a folder of the working copy that
    holds a btrfs subvolume a container made: its files are in no commit (a snapshot
    does not descend into it), so removing it would lose them.

    Raises:
        Conflict: naming the subvolume.
    """
    with FolderWalker(work, read_only=False) as target:
        device = os.fstat(_folder(target, "")).st_dev
        for path in folders:
            top = target.folder(path)
            if top is None:
                continue
            nested = _other_device(top, path, device)
            if nested is not None:
                raise Conflict(
                    f"the merge would remove /{printable(path)}, which holds the btrfs "
                    f"subvolume /{printable(nested)} that a container made; its files are "
                    "in no commit, so pfs does not delete them. Move them out of the "
                    "subvolume (or delete it) in the branch, commit, and merge again"
                )


def _other_device(top: int, path: str, device: int) -> str | None:
    """The first folder at or under ``path`` (open as ``top``) on another device. A
    container made the tree: at most ``MAX_OPEN_FOLDERS`` descriptors are open, however
    wide or deep it is (``FolderChain``)."""
    if os.fstat(top).st_dev != device:
        return path
    # Each item: a folder's path, and its subfolders still to look into.
    chain: FolderChain[tuple[str, list[str]]] = FolderChain()
    try:
        fd = os.open(".", FOLDER_FLAGS, dir_fd=top)
        chain.push(fd, (path, _subfolders(fd)))
        while chain:
            folder, pending = chain.items[-1]
            if not pending:
                chain.pop()
                continue
            name = pending.pop()
            child = os.open(name, FOLDER_FLAGS, dir_fd=chain.fd())
            inner = f"{folder}/{name}"
            if os.fstat(child).st_dev != device:
                os.close(child)
                return inner
            chain.push(child, (inner, _subfolders(child)))
        return None
    finally:
        chain.close()


def _subfolders(fd: int) -> list[str]:
    return [name for name, is_folder in entries(fd) if is_folder]


def _depth(path: str) -> tuple[int, str]:
    return path.count("/"), path


def _folder(walker: FolderWalker, path: str) -> int:
    fd = walker.folder(path)
    if fd is None:
        raise Conflict(
            f"the working copy has no folder /{printable(path)} where the merge expected "
            "one: something writes to it; nothing was committed, the branch is left as it was"
        )
    return fd


def _remove(target: FolderWalker, path: str, ours: Node) -> None:
    """Remove what our side holds at ``path`` (the working copy holds the same)."""
    folder, name = split(path)
    fd = target.folder(folder)
    if fd is None:
        return  # its folder went already, with it
    try:
        if ours.kind == "dir":
            target.forget(path)
            remove_tree(fd, name)
        else:
            os.unlink(name, dir_fd=fd)  # unlinkat never follows a link
    except FileNotFoundError:
        return


def _create(target: FolderWalker, source: FolderWalker | None, path: str, node: Node) -> None:
    """Make ``path`` in the working copy hold ``node`` (a file's bytes come from
    ``source``, their snapshot; None only for the empty tree, which holds no file)."""
    if path == "":
        root = _folder(target, "")
        os.fchown(root, node.uid, node.gid)
        os.fchmod(root, node.mode)
        _set_xattrs(root, node)
        return
    folder, name = split(path)
    fd = _folder(target, folder)
    if node.kind == "dir":
        try:
            os.mkdir(name, 0o700, dir_fd=fd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                raise
    elif node.kind == "file":
        assert source is not None
        _copy_file(source, path, fd, name, node)
        return
    elif node.kind == "symlink":
        assert node.target is not None
        os.symlink(node.target, name, dir_fd=fd)
        os.chown(name, node.uid, node.gid, dir_fd=fd, follow_symlinks=False)
        _set_xattrs(at(fd, name), node)
        return
    else:
        os.mknod(name, _SPECIAL[node.kind] | 0o600, node.rdev, dir_fd=fd)
    # A folder or special file that was just made (or checked) here; a container may
    # have swapped it for a link since, so nothing below follows a link at ``name``.
    os.chown(name, node.uid, node.gid, dir_fd=fd, follow_symlinks=False)
    _chmod_made(fd, name, path, node)
    _set_xattrs(at(fd, name), node)


def _chmod_made(folder: int, name: str, path: str, node: Node) -> None:
    """chmod what was just made at ``name`` (chmod has no no-follow form on Linux): pin
    it with ``O_PATH | O_NOFOLLOW``, check it is still of the node's kind, and chmod the
    pinned entry itself through its ``/proc/self/fd`` name.

    Raises:
        Conflict: it is something else now (a link, ...).
    """
    made = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    try:
        if kind_of(os.fstat(made).st_mode) != node.kind:
            raise Conflict(
                f"/{printable(path)} changed while the merge wrote it (it is no "
                f"{node.kind} now): something writes to the working copy; nothing was "
                "committed, the branch is left as it was"
            )
        os.chmod(f"/proc/self/fd/{made}", node.mode)
    finally:
        os.close(made)


def _set_xattrs(where: int | str, node: Node) -> None:
    """Make the entry's extended attributes exactly the node's (after its owner and mode:
    a chown clears file capabilities). ``where``: a descriptor or an ``at`` path."""
    follow = isinstance(where, int)
    wanted = dict(node.xattrs)
    for name, _value in read_xattrs(where):
        if name not in wanted:
            os.removexattr(where, name, follow_symlinks=follow)
    for name, value in node.xattrs:
        os.setxattr(where, name, value, follow_symlinks=follow)


def _copy_file(source: FolderWalker, path: str, fd: int, name: str, node: Node) -> None:
    src = source.open_file(path)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            try:
                clone_file(src, dst)
            except CloneRefused:
                _copy_bytes(src, dst)
            info = os.fstat(src)
            if (node.uid, node.gid) != (os.geteuid(), os.getegid()):
                os.fchown(dst, node.uid, node.gid)
            os.fchmod(dst, node.mode)  # after chown, which clears setuid bits
            _set_xattrs(dst, node)
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_bytes(src: int, dst: int) -> None:
    while os.copy_file_range(src, dst, 1 << 30):
        pass
