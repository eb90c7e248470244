"""The only package that runs btrfs: subvolume operations and the pool's image file."""

from pfs_volume.btrfs.command import run_command
from pfs_volume.btrfs.pool import BtrfsPool, SubvolumeInfo
from pfs_volume.btrfs.pool_image import PoolImage, filesystem_type, prepare_pool
from pfs_volume.errors import BtrfsCommandError

__all__ = [
    "BtrfsCommandError",
    "BtrfsPool",
    "PoolImage",
    "SubvolumeInfo",
    "filesystem_type",
    "prepare_pool",
    "run_command",
]
