"""The trigger loop and the node's job slots.

Every ``TRIGGER_INTERVAL`` (or at once when woken) the loop looks at each pipeline this
node runs: it picks the input set consistent by provenance (``consistency.resolve``)
and queues a job when that set, the spec or a reprocess request differs from the
latest job's (``triggers``). Queued jobs start oldest first in a pool of ``max_jobs``
threads, one job per pipeline at a time, so a slow job never delays another pipeline's
trigger. The loop itself never waits for a job.

A job is killed (pipeline stopped or deleted, daemon stopping) by setting its stop
event: the runner removes its containers and commits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pfs_volume.errors import Conflict, DatumFailed, JobKilled, NotFound, OutputMoved, PfsError
from pfs_volume.meta import CommitRecord, MetadataStore, rfc3339, utcnow
from pfs_volume.pipelines import joblogs
from pfs_volume.pipelines.documents import PipelineDocument, PipelineDocuments
from pfs_volume.pipelines.jobs import DatumResult, JobRecord, JobStore
from pfs_volume.pipelines.reasons import DELETED, INTERRUPTED, OUTPUT_MOVED, STOPPED
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.spec import fingerprint
from pfs_volume.pipelines.triggers import Triggers

log = logging.getLogger(__name__)

TRIGGER_INTERVAL = 1.0
"""Seconds between looks at the input branches."""
KILL_WAIT = 60.0
"""Seconds a stop or delete waits for a killed job to remove its containers."""


@dataclass(frozen=True)
class Running:
    """A job this node is running, and the event that kills it."""

    job_id: str
    pipeline: str
    stop: threading.Event
    done: threading.Event


class Scheduler:
    """Queues and runs the jobs of the pipelines this node owns.

    Args:
        store: the metadata store (pipelines, jobs, commit records, branch heads).
        runner: runs one job.
        node_id: this node.
        owns: whether this node runs a pipeline's jobs.
        max_jobs: jobs run at once on this node.
        after_job: called with the pipeline's name after each job's end is recorded
            (collects datum outputs no job can reuse).
    """

    def __init__(
        self,
        store: MetadataStore,
        runner: JobRunner,
        node_id: str,
        owns: Callable[[str], bool],
        max_jobs: int,
        after_job: Callable[[str], object] = lambda _pipeline: None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.node_id = node_id
        self.owns = owns
        self.max_jobs = max_jobs
        self.after_job = after_job
        self.documents = PipelineDocuments(store)
        self.jobs = JobStore(store)
        self.triggers = Triggers(store, self.jobs, self._notify)
        self.provenance = self.triggers.provenance
        self.changed = threading.Condition()
        """Notified whenever a job of this node changes state."""
        self.waiting = self.triggers.waiting
        """Pipeline -> why its inputs cannot be used yet (the triggers' own dict)."""
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="pfs-job")
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # life cycle

    def start(self) -> None:
        """Settle jobs a crash interrupted, then watch inputs and run jobs."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="pfs-pipelines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and kill the jobs under way (they run again at the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:  # _dispatch starts nothing once _stopping is set
            running = list(self._running.values())
        for item in running:
            item.stop.set()
        deadline = time.monotonic() + KILL_WAIT
        for item in running:
            item.done.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """Look at the inputs now."""
        self._wake.set()

    def recover(self) -> list[str]:
        """Mark jobs a crash left running on this node as failed and remove their
        containers and scratch; the trigger then runs their inputs again. Their ids."""
        interrupted = [
            j
            for j in self.jobs.list(state="running")
            if j.state == "running" and j.node in ("", self.node_id)
        ]
        for job in interrupted:
            made = self._committed_by(job)
            if made is not None:
                # Killed after its output commit, before its end was recorded: it
                # succeeded, and running it again would commit its output twice.
                results = joblogs.results_so_far(self.runner.logs_dir(job.pipeline, job.id))
                self._finish(job, "success", None, results, made)
                continue
            self.jobs.save(
                replace(job, state="failure", finished=rfc3339(utcnow()), error=INTERRUPTED)
            )
        if interrupted:
            try:
                removed = self.runner.cleanup(j.id for j in interrupted)
                log.info("removed %d container(s) of interrupted jobs", removed)
            except Exception as exc:
                log.warning("containers of interrupted jobs not removed: %s", exc)
        for job in interrupted:  # after the containers: nothing writes there any more
            try:
                self.runner.drop_scratch(job.pipeline, job.id)
            except PfsError as exc:
                log.warning("job=%s scratch outputs not removed: %s", job.id, exc)
        return [j.id for j in interrupted]

    def _committed_by(self, job: JobRecord) -> CommitRecord | None:
        """The output commit ``job`` made, when it is its output branch's head."""
        document = self.documents.find(job.pipeline)
        if document is None:
            return None
        output = document.spec.output
        branch = self.store.get_branch(output.repo, output.branch)
        if branch is None or branch.head is None:
            return None
        head = self.store.get_commit(output.repo, branch.head)
        return head if head is not None and head.job == job.id else None

    def settle(self, timeout: float) -> bool:
        """Wait until this node runs no job (its end and clean-up done); False if one
        still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 1.0))
        return True

    def is_running(self, pipeline: str) -> bool:
        """Whether this node runs a job of the pipeline now."""
        with self._lock:
            return pipeline in self._running

    # killing

    def kill(self, pipeline: str, reason: str, wait: bool = True) -> list[str]:
        """Kill the pipeline's running job on this node and its queued jobs; the ids of
        those killed (a job whose commit the stop came too late for ended a success and
        is not among them)."""
        with self._lock:
            running = self._running.get(pipeline)
        killed = []
        if running is not None:
            running.stop.set()
            killed.append(running.job_id)
        for job in self.jobs.list(pipeline):
            if job.state == "queued":
                try:
                    self.jobs.save(
                        replace(job, state="killed", error=reason, finished=rfc3339(utcnow()))
                    )
                    killed.append(job.id)
                except Conflict:
                    pass  # it started meanwhile: its stop event or the next pass ends it
        if running is not None and wait:
            running.done.wait(timeout=KILL_WAIT)
            ended = self.jobs.get(running.job_id)
            if ended is not None and ended.state == "success":
                killed.remove(running.job_id)  # the stop came as it committed: it stands
        self._notify()
        return killed

    # the loop

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(TRIGGER_INTERVAL)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.tick()
            except PfsError as exc:
                log.warning("pipelines: trigger pass failed (retried): %s", exc)
            except Exception:
                log.exception("pipelines: trigger pass crashed (retried)")

    def tick(self) -> None:
        """One pass: kill jobs whose pipeline went, queue a job for each pipeline whose
        consistent input set moved, then start queued jobs while slots are free."""
        documents = {d.spec.name: d for d in self.documents.list()}
        with self._lock:
            running = list(self._running.values())
        for item in running:
            document = documents.get(item.pipeline)
            if document is None or document.stopped:
                item.stop.set()
        for name in [n for n in self.waiting if n not in documents]:
            self.waiting.pop(name, None)
        for document in documents.values():
            if document.stopped or not self.owns(document.spec.name):
                self.waiting.pop(document.spec.name, None)
                continue
            try:  # one pipeline's trouble never holds the others up
                self._queue_if_moved(document)
            except PfsError as exc:
                log.warning("pipeline=%s: trigger failed (retried): %s", document.spec.name, exc)
        self._dispatch(documents)

    def _queue_if_moved(self, document: PipelineDocument) -> None:
        """Queue the pipeline's next job if its inputs moved (see ``Triggers``)."""
        self.triggers.queue_if_moved(document)

    def _dispatch(self, documents: dict[str, PipelineDocument]) -> None:
        for job in self.jobs.list(state="queued"):
            if job.state != "queued" or not self.owns(job.pipeline):
                continue
            document = documents.get(job.pipeline)
            if document is None or job.id <= document.epoch:  # deleted (or made anew)
                self._kill_queued(job, DELETED)
                continue
            if document.stopped:
                self._kill_queued(job, STOPPED)
                continue
            with self._lock:
                if self._stopping.is_set():
                    return
                if job.pipeline in self._running or len(self._running) >= self.max_jobs:
                    continue
                try:
                    job = self.jobs.save(
                        replace(
                            job,
                            state="running",
                            started=rfc3339(utcnow()),
                            node=self.node_id,
                            # the spec it runs with (an update may have come meanwhile)
                            fingerprint=fingerprint(document.spec),
                            branches={i.name: i.branch for i in document.spec.inputs},
                        )
                    )
                except Conflict:
                    continue  # another node or pass took it
                item = Running(job.id, job.pipeline, threading.Event(), threading.Event())
                self._running[job.pipeline] = item
            # A stop or delete that came after ``documents`` was read, and whose kill
            # did not see this job in _running, stored the pipeline first: it shows here.
            current = self.documents.find(job.pipeline)
            if current is None or current.stopped or current.epoch != document.epoch:
                item.stop.set()
            self._notify()
            try:
                self._pool.submit(self._execute, job, document, item)
            except RuntimeError:  # the pool shut down: the daemon is stopping
                with self._lock:
                    self._running.pop(job.pipeline, None)
                item.done.set()
                self._finish(job, "failure", INTERRUPTED, [], None)
                return

    def _kill_queued(self, job: JobRecord, reason: str) -> None:
        """Mark a queued job killed, unless it changed meanwhile (started on another
        node, or killed already): a queued job's record is never saved over."""
        try:
            self.jobs.save(replace(job, state="killed", error=reason, finished=rfc3339(utcnow())))
        except Conflict:
            return
        self._notify()

    def _execute(self, job: JobRecord, document: PipelineDocument, item: Running) -> None:
        try:
            self.run_job(job, document, item.stop)
        except Exception:
            log.exception("pipeline=%s job=%s: its end was not recorded", job.pipeline, job.id)
            try:  # never leave it "running": the trigger would wait on it for ever
                current = self.jobs.get(job.id)
                if current is not None and current.state == "running":  # else it ended
                    self._finish(current, "failure", INTERRUPTED, [], None)
            except Exception as exc:
                log.error("job=%s stays running until the next start: %s", job.id, exc)
        finally:
            with self._lock:
                self._running.pop(job.pipeline, None)
            item.done.set()
            self._notify()
            self._wake.set()

    def run_job(
        self, job: JobRecord, document: PipelineDocument, stop: threading.Event
    ) -> JobRecord:
        """Run one job, already marked running, to its end; the job as it ended."""
        spec = document.spec
        previous = next(
            (
                j
                for j in reversed(self.jobs.list(spec.name))
                if j.state == "success"
                and j.id != job.id
                and j.id > document.reprocess_after
                and j.id > document.epoch
            ),
            None,
        )
        if set(job.inputs) != {i.name for i in spec.inputs}:
            return self._finish(
                job,
                "failure",
                "the pipeline's inputs changed since this job was queued "
                f"({', '.join(sorted(job.inputs))}); a new job runs on the new ones",
                [],
                None,
            )
        try:
            results, made = self.runner.run(spec, job, previous, stop)
        except JobKilled as exc:
            reason = str(exc)
            if self._stopping.is_set():
                reason = INTERRUPTED
            else:
                current = self.documents.find(spec.name)
                reason = DELETED if current is None else STOPPED if current.stopped else reason
            state = "failure" if reason == INTERRUPTED else "killed"
            ended = self._finish(job, state, reason, [], None)
        except OutputMoved:
            gone = self.documents.find(spec.name) is None
            ended = self._finish(job, "killed", DELETED if gone else OUTPUT_MOVED, [], None)
        except DatumFailed as exc:
            ended = self._finish(job, "failure", str(exc), list(exc.results), None)
        except PfsError as exc:
            ended = self._finish(job, "failure", str(exc), [], None)
        except Exception as exc:
            log.exception("pipeline=%s job=%s crashed", job.pipeline, job.id)
            ended = self._finish(job, "failure", f"internal error in pfs: {exc!r}", [], None)
        else:
            ended = self._finish(job, "success", None, results, made)
        try:
            self.runner.forget_volumes(spec, job)  # after the job's end is recorded
        except Exception as exc:
            log.warning("job=%s volumes not removed: %s", job.id, exc)
        try:
            self.after_job(spec.name)
        except (PfsError, OSError) as exc:
            log.warning("pipeline=%s datum outputs not collected: %s", spec.name, exc)
        return ended

    def _finish(
        self,
        job: JobRecord,
        state: str,
        error: str | None,
        results: list[DatumResult],
        made: CommitRecord | None,
    ) -> JobRecord:
        output = f"{made.repo}@{made.id}" if made is not None else None
        try:
            ended = self.jobs.save(
                replace(
                    job,
                    state=state,
                    error=error,
                    finished=rfc3339(utcnow()),
                    datums=tuple(results),
                    output=output,
                )
            )
        except Conflict:
            found = self.jobs.get(job.id)
            if found is None:
                raise NotFound(f"job {job.id} vanished") from None
            ended = self.jobs.save(
                replace(
                    found,
                    state=state,
                    error=error,
                    finished=rfc3339(utcnow()),
                    datums=tuple(results),
                    output=output,
                )
            )
        log.info(
            "pipeline=%s job=%s %s%s", job.pipeline, job.id, state, f": {error}" if error else ""
        )
        self._notify()
        return ended

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()
