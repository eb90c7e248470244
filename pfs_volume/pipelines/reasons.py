"""Why a job ended, when pfs ended it (not its own datums): the errors recorded on
such jobs, and whether their inputs run again by themselves."""

from __future__ import annotations

from pfs_volume.pipelines.jobs import JobRecord

INTERRUPTED = "the pfs daemon stopped during the job; it runs again"
STOPPED = "the pipeline was stopped (pfs pipeline start runs it again)"
DELETED = "the pipeline was deleted"
OUTPUT_MOVED = (
    "the pipeline's output moved while the job ran (pipeline update): nothing was "
    "committed; a new job writes the new output"
)
REPROCESSED = "superseded: the pipeline was updated with --reprocess before it started"


def retried(job: JobRecord) -> bool:
    """Whether a job ended for a reason of pfs's, not its own, so that its inputs run
    again by themselves (daemon stopped, pipeline stopped, output moved, reprocess)."""
    return (job.state == "failure" and job.error == INTERRUPTED) or (
        job.state == "killed" and job.error in (STOPPED, OUTPUT_MOVED, REPROCESSED)
    )
