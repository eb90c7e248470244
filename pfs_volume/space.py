"""Keeping a full pool recoverable: a preallocated reserve file, and the 507 of a full pool.

What a full btrfs pool does (measured on a 256 MiB pool filled by ``dd`` from a working
copy, kernel 6.18): every write of file data fails with ENOSPC, SQLite's included
("database or disk is full"), so no metadata transaction commits; snapshots, subvolume
create and delete, mkdir, rename and unlink still work (they use metadata space, which
btrfs keeps apart). A pfs verb that frees space still needs a metadata transaction, so
without help none of them works once the pool is full.

The help is ``<pool>/reserve``: a file of ``reserve_size`` bytes, preallocated with
``fallocate`` while there is room. Only a verb that frees space or releases state
(``freeing``: gc, repo and branch delete, releasing a mount) gives it up when it meets
ENOSPC, and then retries once; ordinary verbs never touch it and answer ``PoolFull``
(507). Once the pool has room again the reserve is made again.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple, TypeVar

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import PfsError, PoolFull

log = logging.getLogger(__name__)

T = TypeVar("T")

RESERVE_NAME = "reserve"
"""The reserve file's name at the pool's root (outside every repo and subvolume)."""
RESERVE_MAX = 64 * 1024**2
"""The reserve never holds more than this many bytes..."""
RESERVE_FRACTION = 50
"""...nor more than 1/50 (2 %) of the pool."""
REFILL_FACTOR = 2
"""The reserve is made only while at least this many times its size is free: making it
must never be what fills the pool."""
USAGE_WORDS = "bytes used); free space with"
"""In every message ``full_error`` made (so that it is made once)."""
NO_SPACE_WORDS = ("No space left on device", "database or disk is full")
"""How ENOSPC reads once a tool turned it into text (btrfs's stderr, SQLite's error)."""


class Reserve(NamedTuple):
    """The pool's reserve: ``kept`` when pfs keeps one for this pool, ``held`` when its
    file is there, ``size`` its bytes."""

    kept: bool
    held: bool
    size: int


def reserve_size(pool_bytes: int) -> int:
    """The reserve's size for a pool of ``pool_bytes``: min(64 MiB, 2 % of the pool)."""
    return min(RESERVE_MAX, pool_bytes // RESERVE_FRACTION)


def is_no_space(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it was raised from) says the file system is full:
    an OSError ENOSPC, or a storage error carrying btrfs's or SQLite's words for it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PoolFull):
            return True
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if isinstance(current, PfsError) and any(w in str(current) for w in NO_SPACE_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


class SpaceReserve:
    """The pool's reserve file and the ENOSPC policy around it.

    The file exists only once ``start`` ran (the daemon calls it): services built over a
    pool without it (tests of other things) never find a reserve in their pool.

    Args:
        pool: the btrfs pool.
    """

    def __init__(self, pool: BtrfsPool) -> None:
        self.pool = pool
        self.path = pool.root / RESERVE_NAME
        self.kept = False
        self._lock = threading.Lock()
        self._releases = 0
        """How many times the reserve was released: a verb that met a full pool while
        another released it retries on that space."""

    @property
    def size(self) -> int:
        """The reserve's size for this pool, in bytes."""
        return reserve_size(self.pool.space()[1])

    def state(self) -> Reserve:
        """Whether pfs keeps a reserve, whether it is there, and its size."""
        return Reserve(kept=self.kept, held=self.held(), size=self.size)

    def held(self) -> bool:
        """True when the reserve file exists (whole or not: see ``refill``)."""
        return self.path.exists()

    def _short_by(self, size: int) -> int:
        """How many bytes the reserve file lacks (all of them when it is missing); a
        daemon killed while making it leaves it short."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return size
        return max(0, size - min(info.st_size, info.st_blocks * 512))

    def start(self) -> bool:
        """Keep a reserve from now on, and make it if there is room; True when it exists.
        Start-up recovery may just have deleted subvolumes (a gc or repo delete a crash
        cut off): their space counts once btrfs's cleaner freed it."""
        self.kept = True
        return self.refill(after_deletes=True)

    def refill(self, after_deletes: bool = False) -> bool:
        """Make the reserve again (or whole again: a crash may have cut it short) if it
        is kept and the pool has room for what it lacks (``REFILL_FACTOR`` times that
        free); True when it exists afterwards. Never raises: a pool without a reserve
        works, it is only harder to recover when full.

        Args:
            after_deletes: subvolumes were just deleted: when the pool looks too full,
                wait for btrfs's cleaner to free their space and look again.
        """
        if not self.kept:
            return False
        with self._lock:
            size = self.size
            missing = self._short_by(size)
            if not missing:
                return True
            free, total = self.pool.space()
            if after_deletes and free < REFILL_FACTOR * missing:
                try:
                    free = self.pool.free_bytes()
                except PfsError as exc:
                    log.warning("pool reserve not made: free space unknown: %s", exc)
                    return self.held()
            if size <= 0 or free < REFILL_FACTOR * missing:
                log.info(
                    "pool reserve not made: %d of %d bytes free, %d wanted", free, total, missing
                )
                return self.held()
            made = missing == size and not self.held()
            try:
                flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | (os.O_EXCL if made else 0)
                fd = os.open(self.path, flags, 0o600)
                try:
                    os.posix_fallocate(fd, 0, size)
                finally:
                    os.close(fd)
            except OSError as exc:
                if made:
                    self.path.unlink(missing_ok=True)
                log.warning("pool reserve of %d bytes not made: %s", size, exc)
                return self.held()
            log.info("pool reserve of %d bytes made at %s", size, self.path)
            return True

    def release(self, why: str) -> bool:
        """Give the reserve's space back to the pool at once; True when there was one.

        Args:
            why: what needed the space, for the log.
        """
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            # The extents are free only once the transaction that unlinked them commits.
            self.pool.sync(self.pool.root)
            self._releases += 1
        log.warning("pool full: reserve released so that %s can proceed", why)
        return True

    def full_error(self, what: str, cause: BaseException | None = None) -> PoolFull:
        """The error a user sees when ``what`` met a full pool: how full, what to do.

        Args:
            what: the verb and its object ("the commit of photos/master").
            cause: the error met; when it already says "the pool is full: ..." (a lower
                layer told what it undid), its words are kept and the usage added.
        """
        free, total = self.pool.space()
        advice = (
            f"({total - free} of {total} bytes used); free space with `pfs gc`, "
            "`pfs repo delete` or `pfs branch delete`, or grow the pool"
        )
        said = str(cause) if cause is not None else ""
        if USAGE_WORDS in said:
            return PoolFull(said)
        if said.startswith("the pool is full"):
            return PoolFull(f"{said} {advice}")
        return PoolFull(f"{what} failed: the pool is full {advice}")

    @contextmanager
    def reporting(self, what: str) -> Iterator[None]:
        """Turn a full pool met in the ``with`` block into ``PoolFull`` (507).

        Args:
            what: the verb and its object ("commit of photos/master"), for the message.
        Raises:
            PoolFull: the block met ENOSPC.
        """
        try:
            yield
        except Exception as exc:
            if not is_no_space(exc) or USAGE_WORDS in str(exc):
                raise
            log.warning("%s: pool full: %s", what, exc)
            raise self.full_error(what, exc) from exc

    def freeing(self, what: str, action: Callable[[], T], after_deletes: bool = False) -> T:
        """Run a verb that frees space or releases state; when it meets a full pool,
        release the reserve (or take the space another verb released while this one
        ran) and run it once more. Afterwards, make the reserve again if
        there is room. The verb must be safe to run again after a failed run.

        Args:
            what: the verb and its object, for the log and the error.
            action: the verb.
            after_deletes: the verb deletes subvolumes (see ``refill``).
        Returns:
            What ``action`` returned.
        Raises:
            PoolFull: it met a full pool with no reserve left to release.
        """
        with self.reporting(what):
            released_before = self._releases
            try:
                result = action()
            except Exception as exc:
                if not is_no_space(exc):
                    raise
                # Another freeing verb at once may have released it meanwhile: its
                # space is there to retry on all the same.
                if not self.release(what) and self._releases == released_before:
                    raise
                log.warning("%s: retried once the reserve was released (%s)", what, exc)
                result = action()
        self.refill(after_deletes)
        return result
