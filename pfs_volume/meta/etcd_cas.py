"""Compare-and-swap in etcd: the one way the etcd store makes a guarded write.

``guarded_write`` builds the transaction of every guarded write (a head move, a record
created only where none is, a read-modify-write): compares on the create revision (a
key absent, or a fence's lock key still the one its holder created) and on the mod
revision (a key unchanged since it was read), and says whether they held.
``read_modify_write`` retries one on a single key while other writers win the race.

A fence (``Fence``) is checked as DESIGN.md "Cluster" says: the write holds only while
the lock key exists with the create revision its holder got, in the same transaction,
so a holder whose lease expired while it was paused cannot write.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from pfs_volume.errors import Busy
from pfs_volume.meta.etcd_client import (
    Compare,
    EtcdClient,
    KeyValue,
    Op,
    create_revision_equals,
    key_exists,
    mod_revision_equals,
    put_op,
)
from pfs_volume.meta.records import Fence

T = TypeVar("T")

CAS_ATTEMPTS = 16
"""Read-modify-write retries (holders, placement, pruned marks, mount uses) before giving
up with Busy: each lost race means another writer succeeded, so this many in a row means
a storm, not bad luck."""
COUNTED_ATTEMPTS = 4 * CAS_ATTEMPTS
"""Tries of a head move that counts a commit in its branch's part of the repo's total:
the size meter measuring that branch's earlier commits moves the part too, so a lost race
on it alone is no conflict of the branch."""
COUNTED_PAUSE_MOST = 0.05
"""The longest random pause, in seconds, between two of those tries."""


def pause_before(attempt: int) -> None:
    """Before try ``attempt`` (0: the first, no pause) of a contended write: a random
    pause growing from 1 ms to ``COUNTED_PAUSE_MOST``, so racing writers spread out."""
    if attempt:
        time.sleep(random.uniform(0, min(COUNTED_PAUSE_MOST, 0.001 * 2 ** min(attempt, 8))))


def guarded_write(
    client: EtcdClient,
    ops: Sequence[Op],
    *,
    unchanged: Sequence[KeyValue] = (),
    absent: Sequence[str] = (),
    present: Sequence[str] = (),
    fence: Fence | None = None,
    also: Sequence[Compare] = (),
) -> bool:
    """Apply ``ops`` in one transaction if every guard holds; True when they did (and
    the ops were applied), False when one did not (and nothing was).

    Args:
        client: the etcd client.
        ops: the writes.
        unchanged: keys as read: each must still have the mod revision it had then.
        absent: keys that must not exist.
        present: keys that must exist.
        fence: a write lock that must still be held (its key with its create revision).
        also: further compares (a range empty, a version).
    Raises:
        As ``EtcdClient.txn``.
    """
    compares = [mod_revision_equals(kv.key, kv.mod_revision) for kv in unchanged]
    compares += [create_revision_equals(key, 0) for key in absent]
    compares += [key_exists(key) for key in present]
    compares += also
    if fence is not None:
        compares.append(create_revision_equals(fence.key, fence.revision))
    return client.txn(compares, ops)


def fence_held(fence: Fence, lock: KeyValue | None) -> bool:
    """True when ``lock`` (the fence's lock key as read now) is still the fence's."""
    return lock is not None and lock.create_revision == fence.revision


def read_modify_write(
    client: EtcdClient,
    key: str,
    change: Callable[[KeyValue | None], tuple[str | None, T]],
    busy: str,
) -> T:
    """Replace the value of ``key`` by compare-and-swap on the mod revision it was read
    at, reading again when another writer came between.

    Args:
        change: given the key as read (None: absent), the new value (None: write
            nothing) and what to return once it is written; it may raise to stop.
        busy: the message of the Busy raised after ``CAS_ATTEMPTS`` lost races.
    Raises:
        Busy: other writers won ``CAS_ATTEMPTS`` times in a row. Whatever ``change``
            raises, and as ``EtcdClient.txn``.
    """
    for _ in range(CAS_ATTEMPTS):
        found = client.get(key)
        value, result = change(found)
        if value is None:
            return result
        unchanged = [found] if found is not None else []
        absent = [key] if found is None else []
        if guarded_write(client, [put_op(key, value)], unchanged=unchanged, absent=absent):
            return result
    raise Busy(busy)
