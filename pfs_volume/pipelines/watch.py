"""Whether a running job must end now: killed from outside, or past its timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from pfs_volume.errors import JobKilled, JobTimedOut
from pfs_volume.pipelines.jobs import DatumResult, JobRecord


class JobWatch:
    """Whether a job must end now: its ``stop`` event was set, or its timeout passed.

    Args:
        stop: the event that kills the job (None: nothing kills it from outside).
        timeout: the job's ``job_timeout`` in seconds (None: no limit).
    """

    def __init__(self, stop: threading.Event | None, timeout: float | None) -> None:
        self.stop = stop
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def killed(self) -> bool:
        """Whether the job's ``stop`` event was set."""
        return self.stop is not None and self.stop.is_set()

    def timed_out(self) -> bool:
        """Whether the job ran past its timeout."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def ended(self) -> bool:
        """Whether the job must end now (killed or timed out)."""
        return self.killed() or self.timed_out()

    def raise_if_ended(self, job: JobRecord, results: Sequence[DatumResult]) -> None:
        """Raise JobKilled or JobTimedOut when the job must end."""
        if self.killed():
            raise JobKilled(f"job {job.id} was killed; nothing was committed")
        if self.timed_out():
            raise JobTimedOut(
                f"job timed out after {self.timeout:g} s; nothing was committed", results
            )
