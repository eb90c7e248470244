"""Job records: stored as JSON and read back whole."""

from __future__ import annotations

from pfs_volume.pipelines.jobs import DatumResult, JobRecord, new_job_id


def test_a_job_round_trips_through_its_stored_form() -> None:
    job = JobRecord(
        id=new_job_id(),
        pipeline="map",
        inputs={"text": "text@" + "a" * 32},
        state="success",
        output="map@" + "b" * 32,
        node="node1",
        fingerprint="f" * 64,
        datums=(DatumResult("d" * 64, {"text": "a.txt"}, "reused", 0.5, 0, "j0"),),
    )
    again = JobRecord.from_json(job.to_json(), 7)
    assert again == JobRecord(**{**job.__dict__, "version": 7})
    assert again.done and not JobRecord(id="x", pipeline="p", inputs={}).done


def test_job_ids_sort_by_creation() -> None:
    ids = [new_job_id() for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
