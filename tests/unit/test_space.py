"""The pure parts of the full-pool policy: the reserve's size, and what counts as a full
pool once a tool turned ENOSPC into an error of its own."""

from __future__ import annotations

import errno

import pytest

from pfs_volume.errors import BtrfsCommandError, Conflict, PoolFull, StorageError, error_from_code
from pfs_volume.space import RESERVE_MAX, is_no_space, reserve_size

MIB = 1024**2


@pytest.mark.parametrize(
    ("pool", "reserve"),
    [(256 * MIB, 256 * MIB // 50), (2048 * MIB, 2048 * MIB // 50), (20 * 1024 * MIB, RESERVE_MAX)],
)
def test_the_reserve_is_2_percent_of_the_pool_up_to_64_mib(pool: int, reserve: int) -> None:
    assert reserve_size(pool) == reserve


def test_enospc_in_any_form_is_a_full_pool() -> None:
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_no_space(StorageError("metadata store /p/meta.db: database or disk is full"))
    assert is_no_space(
        BtrfsCommandError(["btrfs", "receive"], 1, "ERROR: write: No space left on device")
    )
    assert is_no_space(PoolFull("the pool is full"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise StorageError("the put failed") from exc
    except StorageError as wrapped:
        assert is_no_space(wrapped), "found through the chain of causes"


def test_other_errors_are_not_a_full_pool() -> None:
    assert not is_no_space(OSError(errno.EPERM, "Operation not permitted"))
    assert not is_no_space(StorageError("btrfs subvolume delete failed: Operation not permitted"))
    assert not is_no_space(Conflict("branch r/master moved"))
    assert not is_no_space(ValueError("No space left on device"))


def test_a_full_pool_is_a_507_with_its_own_code() -> None:
    assert (PoolFull.status, PoolFull.code) == (507, "pool_full")
    assert isinstance(error_from_code("pool_full", "full"), PoolFull)
