"""Finding or making the btrfs pool under the state dir.

When the state dir already lies on btrfs, the pool is a folder in it. Otherwise pfs keeps
the pool in a sparse image file, formats it once with ``mkfs.btrfs`` and loop-mounts it
with ``noatime`` (so reading a working copy never counts as changing it). A mount left by
a daemon that was killed is found and reused.

The pool is private: containers write into it as root, so nothing they leave there may
give a host user anything. The state dir is 0700 and the image 0600, and the pool is
mounted ``nosuid,nodev`` (a reused mount without them is remounted with them): a setuid
binary a container commits runs with its caller's rights, and a device node it makes opens
nothing, even through the bind mounts Docker makes of it (they keep the pool's flags). A
pool on a btrfs file system pfs did not mount cannot be remounted: a clear warning names
the options it lacks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pfs_volume.btrfs.command import run_command
from pfs_volume.errors import InvalidRequest, StorageError
from pfs_volume.private_files import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    create_private_file,
    make_private,
)

log = logging.getLogger(__name__)

IMAGE_NAME = "pool.img"
MOUNT_NAME = "pool"
MIN_POOL_SIZE = 256 * 1024**2
"""mkfs.btrfs refuses much smaller devices; this leaves room for metadata."""
SAFETY_OPTIONS = ("nosuid", "nodev", "noatime")
"""Per-mount flags the pool must have (see the module docstring)."""
MOUNT_OPTIONS = ",".join(("loop", *SAFETY_OPTIONS))


@dataclass(frozen=True)
class PoolImage:
    """A loop-mounted pool image that this node set up (and may tear down)."""

    image: Path
    mountpoint: Path

    def unmount(self) -> None:
        """Unmount the pool; the loop device goes with it (``mount -o loop`` autoclear)."""
        run_command(["umount", str(self.mountpoint)])


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo: where, what type, and its per-mount flags."""

    point: str
    fstype: str
    options: frozenset[str]

    def missing(self) -> list[str]:
        """The safety flags this mount lacks, in ``SAFETY_OPTIONS`` order."""
        return [flag for flag in SAFETY_OPTIONS if flag not in self.options]


def filesystem_type(path: Path) -> str:
    """The type of the file system that holds ``path`` (from /proc/self/mountinfo)."""
    mount = mount_of(path)
    return mount.fstype if mount else ""


def is_mountpoint(path: Path) -> bool:
    """True when a file system is mounted exactly at ``path``."""
    mount = mount_of(path)
    return mount is not None and mount.point == str(path.resolve())


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
    state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    make_private(state_dir, PRIVATE_DIR)
    root = state_dir / MOUNT_NAME
    if filesystem_type(state_dir) == "btrfs":
        root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        make_private(root, PRIVATE_DIR)
        _warn_unless_safe(root)
        return root, None
    image = PoolImage(state_dir / IMAGE_NAME, root)
    root.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    mount = mount_of(root)
    if mount is not None and mount.point == str(root.resolve()):
        if mount.fstype != "btrfs":
            raise StorageError(f"{root} is a mount point, but not of a btrfs file system")
        log.info("reusing the pool already mounted at %s", root)
        if missing := mount.missing():
            # A mount an older pfs made, or one made by hand: made safe before any use.
            run_command(["mount", "-o", ",".join(("remount", *missing)), str(root)])
            log.info("pool at %s remounted with %s", root, ",".join(missing))
        make_private(root, PRIVATE_DIR)
        if image.image.exists():
            make_private(image.image, PRIVATE_FILE)
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
        fd = create_private_file(partial, truncate=True)
        try:
            os.truncate(fd, size)
        finally:
            os.close(fd)
        try:
            run_command(["mkfs.btrfs", "-q", "-f", str(partial)])
        except StorageError:
            partial.unlink()
            raise
        partial.rename(image.image)
    make_private(image.image, PRIVATE_FILE)
    run_command(["mount", "-o", MOUNT_OPTIONS, str(image.image), str(root)])
    log.info("mounted pool image %s at %s", image.image, root)
    # The root folder of a new file system is 0755.
    make_private(root, PRIVATE_DIR)
    return root, image


def _warn_unless_safe(root: Path) -> None:
    """Warn when the btrfs file system that holds the pool lacks ``nosuid``/``nodev``."""
    mount = mount_of(root)
    missing = [flag for flag in mount.missing() if flag != "noatime"] if mount else []
    if mount is not None and missing:
        log.warning(
            "SECURITY: the pool %s lies on the btrfs file system mounted at %s without %s: "
            "a setuid binary or device node that a container commits could give a host "
            "user root. Remount it with -o remount,%s (and add the options to /etc/fstab), "
            "or put the state dir on another file system so that pfs mounts a pool image "
            "of its own with them",
            root,
            mount.point,
            ",".join(missing),
            ",".join(missing),
        )


def mount_of(path: Path) -> Mount | None:
    """The deepest mount that contains ``path`` (from /proc/self/mountinfo)."""
    target = str(path.resolve())
    best: Mount | None = None
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            point = _unescape(fields[4])
            fstype = fields[fields.index("-") + 1]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best.point)):
                best = Mount(point, fstype, frozenset(fields[5].split(",")))
    return best


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text
