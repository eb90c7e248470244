"""Where a commit is on its way down the pipelines (``pfs wait``), over a small world of
commit records and job records (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pfs_volume.meta import CommitRecord
from pfs_volume.pipelines.consistency import Provenance
from pfs_volume.pipelines.documents import PipelineDocument
from pfs_volume.pipelines.jobs import JobRecord
from pfs_volume.pipelines.progress import commit_progress
from pfs_volume.pipelines.spec import validate

START = datetime(2026, 1, 1, tzinfo=UTC)


def record(repo: str, commit: str, parent: str | None, second: int) -> CommitRecord:
    return CommitRecord(
        id=commit,
        repo=repo,
        branch="master",
        parent=parent,
        created=START + timedelta(seconds=second),
        message="",
        origin="test",
    )


RECORDS = {
    ("a", "a0"): record("a", "a0", None, 0),
    ("a", "a1"): record("a", "a1", "a0", 1),
    ("a", "a2"): record("a", "a2", "a1", 2),
}


def lookup(repo: str, commit: str) -> CommitRecord | None:
    return RECORDS.get((repo, commit))


def pipeline(name: str, source: str) -> PipelineDocument:
    spec = validate(
        {"name": name, "input": {"repo": source}, "transform": {"image": "i", "cmd": ["x"]}}
    )
    return PipelineDocument(spec=spec, epoch="0")


def job(name: str, ident: str, source: str, state: str) -> JobRecord:
    return JobRecord(id=ident, pipeline=name, inputs={"a": source}, state=state)


DOCS = [pipeline("p", "a"), pipeline("q", "p")]


def states(jobs: dict[str, list[JobRecord]], commit: str, head: str | None = "a2") -> list:
    found = commit_progress("a", "master", commit, DOCS, jobs, Provenance(lookup), {}, head)
    return [(p.pipeline, p.state) for p in found.pipelines]


def test_pending_until_a_job_takes_the_commit_or_a_later_one_in() -> None:
    assert states({}, "a1") == [("p", "pending"), ("q", "pending")]
    later = {"p": [job("p", "1", "a@a2", "running")]}
    assert states(later, "a1") == [("p", "running"), ("q", "pending")]
    earlier = {"p": [job("p", "1", "a@a0", "success")]}
    assert states(earlier, "a1") == [("p", "pending"), ("q", "pending")]


def test_a_failure_blocks_what_lies_below_and_the_first_success_decides() -> None:
    failed = {"p": [job("p", "1", "a@a1", "failure")]}
    assert states(failed, "a1") == [("p", "failure"), ("q", "blocked")]
    then_ok = {"p": [job("p", "1", "a@a1", "success"), job("p", "2", "a@a2", "failure")]}
    assert states(then_ok, "a1")[0] == ("p", "success")


def test_a_branch_reset_past_the_commit_skips_it_instead_of_waiting_for_ever() -> None:
    # master was reset to a0: a1 and a2 are no longer on it, and no job took a1 in.
    found = commit_progress("a", "master", "a1", DOCS, {}, Provenance(lookup), {}, "a0")
    assert [(p.pipeline, p.state) for p in found.pipelines] == [
        ("p", "skipped"),
        ("q", "blocked"),
    ]
    assert found.done and not found.succeeded
    assert "no longer holds the commit" in (found.pipelines[0].detail or "")


def test_a_job_pfs_runs_again_by_itself_is_no_end_for_a_wait() -> None:
    from dataclasses import replace

    from pfs_volume.pipelines.reasons import INTERRUPTED, OUTPUT_MOVED

    for state, reason in (("killed", OUTPUT_MOVED), ("failure", INTERRUPTED)):
        again = {"p": [replace(job("p", "1", "a@a1", state), error=reason)]}
        assert states(again, "a1") == [("p", "pending"), ("q", "pending")], reason
    own = {"p": [replace(job("p", "1", "a@a1", "failure"), error="exit 3")]}
    assert states(own, "a1") == [("p", "failure"), ("q", "blocked")]
