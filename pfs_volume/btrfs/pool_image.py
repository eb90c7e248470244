"""Finding or making the btrfs pool under the state dir.

When the state dir already lies on btrfs, the pool is a folder in it. Otherwise pfs keeps
the pool in a sparse image file, formats it once with ``mkfs.btrfs`` and loop-mounts it
with ``noatime`` (so reading a working copy never counts as changing it). A mount left by
a daemon that was killed is found and reused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pfs_volume.btrfs.command import run_command
from pfs_volume.errors import InvalidRequest, StorageError

log = logging.getLogger(__name__)

IMAGE_NAME = "pool.img"
MOUNT_NAME = "pool"
MIN_POOL_SIZE = 256 * 1024**2
"""mkfs.btrfs refuses much smaller devices; this leaves room for metadata."""
MOUNT_OPTIONS = "loop,noatime"


@dataclass(frozen=True)
class PoolImage:
    """A loop-mounted pool image that this node set up (and may tear down)."""

    image: Path
    mountpoint: Path

    def unmount(self) -> None:
        """Unmount the pool; the loop device goes with it (``mount -o loop`` autoclear)."""
        run_command(["umount", str(self.mountpoint)])


def filesystem_type(path: Path) -> str:
    """The type of the file system that holds ``path`` (from /proc/self/mountinfo)."""
    mount = _mount_of(path)
    return mount[1] if mount else ""


def is_mountpoint(path: Path) -> bool:
    """True when a file system is mounted exactly at ``path``."""
    mount = _mount_of(path)
    return mount is not None and mount[0] == str(path.resolve())


def prepare_pool(state_dir: Path, size: int) -> tuple[Path, PoolImage | None]:
    """Return the pool's root, creating and mounting an image file when needed.

    Args:
        state_dir: pfs's state folder; created if missing.
        size: the image file's size in bytes when one has to be made (sparse).
    Returns:
        ``(pool_root, image)`` where ``image`` is None when the state dir is on btrfs.
    Raises:
        InvalidRequest: for a size below ``MIN_POOL_SIZE``.
        StorageError: when the pool cannot be made or mounted.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    root = state_dir / MOUNT_NAME
    if filesystem_type(state_dir) == "btrfs":
        root.mkdir(exist_ok=True)
        return root, None
    image = PoolImage(state_dir / IMAGE_NAME, root)
    root.mkdir(exist_ok=True)
    if is_mountpoint(root):
        if filesystem_type(root) != "btrfs":
            raise StorageError(f"{root} is a mount point, but not of a btrfs file system")
        log.info("reusing the pool already mounted at %s", root)
        return root, image
    if not image.image.exists():
        if size < MIN_POOL_SIZE:
            raise InvalidRequest(
                f"pool size {size} bytes is too small; at least {MIN_POOL_SIZE} bytes "
                "(256M) are needed"
            )
        log.info("creating a %d-byte sparse pool image at %s", size, image.image)
        # Formatted under another name, so a crash never leaves a half-made pool.img.
        partial = image.image.with_suffix(".partial")
        with open(partial, "wb") as handle:
            os.truncate(handle.fileno(), size)
        try:
            run_command(["mkfs.btrfs", "-q", "-f", str(partial)])
        except StorageError:
            partial.unlink()
            raise
        partial.rename(image.image)
    run_command(["mount", "-o", MOUNT_OPTIONS, str(image.image), str(root)])
    log.info("mounted pool image %s at %s", image.image, root)
    return root, image


def _mount_of(path: Path) -> tuple[str, str] | None:
    """(mount point, fs type) of the deepest mount that contains ``path``."""
    target = str(path.resolve())
    best: tuple[str, str] | None = None
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            point = _unescape(fields[4])
            fstype = fields[fields.index("-") + 1]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best[0])):
                best = (point, fstype)
    return best


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text
