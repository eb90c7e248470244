"""A job's folder of what its datums left: their container output (``DATUM.log``,
written while they run) and their results (``DATUM.json``, written as each ends), and
following that output line by line until the job ends.

The folder is ``<pool>/pipelines/<pipeline>/jobs/<job>``, made and written by the runner
only (no container can reach it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from pfs_volume.errors import Busy
from pfs_volume.pipelines.jobs import DatumResult, JobRecord

log = logging.getLogger(__name__)

FOLLOW_POLL = 0.5
"""Seconds between looks at the log files of a followed job."""
MAX_FOLLOW = 3600.0
"""Seconds one follow lasts at most (then the stream ends with a line saying so): a
follower holds one of the API's few worker threads."""
MAX_FOLLOWERS = 2
"""Follows served at once, so the API's other worker threads stay free for everything
else (``pfs_volume.transport.THREADS``)."""
SHORT_ID = 12
"""Hex digits of a datum id that prefix each followed line."""
MAX_LINE = 64 * 1024
"""Bytes of a followed line: a longer one (a container printing without a newline) is
sent in pieces of this size rather than kept whole until its newline."""
READ_CHUNK = 1024**2
"""Bytes of one log file a follower reads per look: a container's burst is sent over
several looks, never read whole into the daemon's memory."""
MAX_TAIL = 1024**2
"""Bytes of each datum's output ``pfs job logs`` answers with: its tail (the file on the
pool keeps everything; ``--follow`` sends everything as it comes)."""
MAX_TAILS = 16 * 1024**2
"""Bytes of all a job's datums' outputs one ``pfs job logs`` answers with."""

_followers = threading.BoundedSemaphore(MAX_FOLLOWERS)


def write_result(folder: Path, result: DatumResult) -> None:
    """Record a datum's result as it ends, so a running job shows it."""
    staged = folder / f".{result.id}.json.tmp"
    staged.write_text(json.dumps(asdict(result), sort_keys=True))
    staged.rename(folder / f"{result.id}.json")


def results_so_far(folder: Path) -> list[DatumResult]:
    """The results of the datums that ended so far (by when each started)."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(DatumResult.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("datum result %s unreadable: %s", path, exc)
    return sorted(found, key=lambda r: (r.started or "", r.id))


def follow(
    job: Callable[[], JobRecord],
    folder: Path,
    limit: float = MAX_FOLLOW,
    poll: float = FOLLOW_POLL,
    gone: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    """The lines of a job's container output as they are written, each prefixed with
    its datum's short id, until the job ends (or ``limit`` seconds pass).

    Args:
        job: reads the job's current record (its state says when to stop).
        folder: the job's log folder.
        gone: whether the client has hung up (the follow then ends at its next look,
            freeing its slot, even while the job writes nothing).
    Returns:
        An iterator of text lines ending in a newline. The caller must have taken a
        follower slot with ``follower_slot`` and must release it when the iterator ends.
    """
    offsets: dict[Path, int] = {}
    pending: dict[Path, bytes] = {}
    ends = time.monotonic() + limit
    while True:
        done = job().done
        for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
            with open(path, "rb") as log_file:
                log_file.seek(offsets.get(path, 0))
                data = log_file.read(READ_CHUNK)
            if data:
                done = False  # more may wait behind this read: look again before ending
            offsets[path] = offsets.get(path, 0) + len(data)
            lines = (pending.pop(path, b"") + data).split(b"\n")
            rest = lines.pop()
            while len(rest) > MAX_LINE:  # no newline in sight: send it in pieces
                lines.append(rest[:MAX_LINE])
                rest = rest[MAX_LINE:]
            pending[path] = rest
            prefix = path.stem[:SHORT_ID]
            for line in lines:
                yield f"{prefix} | {line.decode(errors='replace')}\n"
        if done:
            for path, rest in sorted(pending.items()):
                if rest:
                    yield f"{path.stem[:SHORT_ID]} | {rest.decode(errors='replace')}\n"
            return
        if gone():
            return
        if time.monotonic() >= ends:
            yield f"pfs: stopped following after {limit:g} s (the limit); run it again to go on\n"
            return
        time.sleep(poll)


def tails(folder: Path) -> dict[str, str]:
    """Each datum's output by datum id: the last ``MAX_TAIL`` bytes of it (and at most
    ``MAX_TAILS`` in all), with a line saying how many bytes before them were left out."""
    found: dict[str, str] = {}
    budget = MAX_TAILS
    for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
        with open(path, "rb") as log_file:
            size = os.fstat(log_file.fileno()).st_size
            keep = min(size, MAX_TAIL, budget)
            log_file.seek(size - keep)
            data = log_file.read(keep)
        budget -= len(data)
        text = data.decode(errors="replace")
        if len(data) < size:
            text = (
                f"pfs: the first {size - len(data)} bytes of this output are left out (it is "
                f"{size} bytes long; pfs job logs shows at most {MAX_TAIL} of each datum)\n" + text
            )
        found[path.stem] = text
    return found


def follower_slot() -> Callable[[], None]:
    """Take one of ``MAX_FOLLOWERS`` slots; returns what releases it.

    Raises:
        Busy: every slot is taken.
    """
    if not _followers.acquire(blocking=False):
        raise Busy(
            f"{MAX_FOLLOWERS} job logs are followed already (the most served at once); "
            "try again later, or read them without --follow"
        )
    return _followers.release
