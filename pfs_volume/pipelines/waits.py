"""Blocking waits: on a job's end, and on every pipeline downstream of a commit.

A wait blocks one of the API's worker threads, so only ``MAX_WAITERS`` block at once and
each for at most ``MAX_WAIT`` seconds; beyond that a wait answers as things are, and the
CLI asks again until done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pfs_volume.errors import InvalidRequest
from pfs_volume.meta import MetadataStore
from pfs_volume.pipelines.documents import PipelineDocuments
from pfs_volume.pipelines.graph import downstream
from pfs_volume.pipelines.jobs import JobRecord, JobStore
from pfs_volume.pipelines.progress import CommitProgress, commit_progress
from pfs_volume.pipelines.scheduler import Scheduler
from pfs_volume.repos import RepoService

T = TypeVar("T")

MAX_WAIT = 30.0
"""Seconds one wait request may block (the CLI asks again until done)."""
MAX_WAITERS = 4
"""Wait requests blocking at once; beyond that a wait answers at once (the CLI asks
again). The API's worker threads (``transport.THREADS``, 8) are shared with every other
request: waits and follows (``joblogs.MAX_FOLLOWERS``) together must leave some free."""


class Waits:
    """Waits on jobs and commits, woken by the scheduler's ``changed`` condition.

    Args:
        repos: the commit graph (the commit waited on).
        store: the metadata store (branch heads).
        documents: the pipeline documents.
        jobs: the job records.
        scheduler: this node's scheduler (its provenance, waiting reasons and ``changed``).
        job: a job by id (raises NotFound).
    """

    def __init__(
        self,
        repos: RepoService,
        store: MetadataStore,
        documents: PipelineDocuments,
        jobs: JobStore,
        scheduler: Scheduler,
        job: Callable[[str], JobRecord],
    ) -> None:
        self._repos = repos
        self._store = store
        self._documents = documents
        self._jobs = jobs
        self._scheduler = scheduler
        self._job = job
        self._waiters = threading.BoundedSemaphore(MAX_WAITERS)

    def job(self, job_id: str, timeout: float) -> JobRecord:
        """The job once it has ended, or as it is after ``timeout`` seconds (at most
        ``MAX_WAIT``). Raises NotFound, and InvalidRequest for a timeout out of range."""
        return self.until(lambda: self._job(job_id), lambda job: job.done, timeout)

    def commit(
        self, repo: str, commit_id: str, timeout: float, branch: str | None = None
    ) -> CommitProgress:
        """Where every pipeline downstream of a commit is, once all are done with it or
        after ``timeout`` seconds (at most ``MAX_WAIT``). Raises NotFound.

        Args:
            branch: the branch the commit was named by (``pfs wait a@dev``), when it was:
                its pipelines are the ones downstream, though the commit may have been
                made on another (dev made from master, a fast-forward merge).
        """
        commit = self._repos.get_commit(repo, commit_id)

        def look() -> CommitProgress:
            documents = self._documents.list()
            below = downstream([d.spec for d in documents], (repo, branch or commit.branch))
            jobs = {spec.name: self._jobs.list(spec.name) for spec in below}  # those alone
            return commit_progress(
                repo,
                branch or commit.branch,
                commit.id,
                documents,
                jobs,
                self._scheduler.provenance,
                dict(self._scheduler.waiting),
                self._head(repo, branch or commit.branch),
            )

        return self.until(look, lambda progress: progress.done, timeout)

    def _head(self, repo: str, branch: str) -> str | None:
        record = self._store.get_branch(repo, branch)
        return None if record is None else record.head

    def until(self, look: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
        """What ``look`` returns once ``done`` says so, or after ``timeout`` seconds;
        at once when ``MAX_WAITERS`` waits block already (the caller asks again).

        Raises:
            InvalidRequest: ``timeout`` is not from 0 to ``MAX_WAIT``.
        """
        if not 0 <= timeout <= MAX_WAIT:
            raise InvalidRequest(f"a wait's timeout must be from 0 to {MAX_WAIT:g} seconds")
        result = look()
        if done(result) or timeout == 0 or not self._waiters.acquire(blocking=False):
            return result
        try:
            deadline = time.monotonic() + timeout
            while not done(result) and time.monotonic() < deadline:
                with self._scheduler.changed:  # jobs on other nodes: look every second
                    self._scheduler.changed.wait(min(1.0, deadline - time.monotonic()))
                result = look()
            return result
        finally:
            self._waiters.release()
