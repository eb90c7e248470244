"""Job records: stored as JSON and read back whole."""

from __future__ import annotations

import re

import pytest

from pfs_volume.errors import Conflict, InvalidRequest, NotFound
from pfs_volume.pipelines.jobs import DatumResult, JobRecord, find_datum, new_job_id


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


def test_a_job_stored_before_tries_errors_and_start_times_reads_with_defaults() -> None:
    stored = (
        '{"created": "2026-11-01T10:00:00Z", "datums": [{"exit_code": 0, "id": "'
        + "d" * 64
        + '", "job": "j0", "paths": {"text": "a.txt"}, "seconds": 1.5, "state": "success"}], '
        '"error": null, "finished": null, "fingerprint": "", "id": "j0", "inputs": {}, '
        '"node": "", "output": null, "pipeline": "map", "started": null, "state": "success"}'
    )
    [datum] = JobRecord.from_json(stored, 3).datums
    assert (datum.tries, datum.error, datum.started) == (0, None, None)
    assert datum.seconds == 1.5 and datum.state == "success"


def _job_with(*ids: str) -> JobRecord:
    return JobRecord(
        id="j1",
        pipeline="p",
        inputs={},
        state="success",
        datums=tuple(DatumResult(i, {"in": i[:4]}, "success") for i in ids),
    )


def test_a_datum_is_found_by_its_id_or_a_unique_prefix() -> None:
    job = _job_with("abcd" + "0" * 60, "abce" + "1" * 60)
    assert find_datum(job, "abcd").id.startswith("abcd0")
    assert find_datum(job, "abce" + "1" * 60).id == "abce" + "1" * 60


@pytest.mark.parametrize(
    ("wanted", "error", "said"),
    [
        ("abc", InvalidRequest, "'abc' is not a datum id: give its 64 hex digits or a unique"),
        ("ABCD", InvalidRequest, "is not a datum id"),
        ("abcd/../x", InvalidRequest, "is not a datum id"),
        ("ffff", NotFound, "job j1 has no datum 'ffff'"),
        ("abc0", NotFound, "has no datum"),
    ],
)
def test_a_bad_or_unknown_datum_id_says_what_was_asked(
    wanted: str, error: type[Exception], said: str
) -> None:
    job = _job_with("abcd" + "0" * 60)
    with pytest.raises(error, match=re.escape(said)):
        find_datum(job, wanted)


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    job = _job_with("abcd" + "0" * 60, "abcd" + "1" * 60)
    with pytest.raises(Conflict, match="'abcd' is the start of 2 datums of job j1"):
        find_datum(job, "abcd")


def test_a_running_job_says_its_datums_appear_as_they_end() -> None:
    job = JobRecord(id="j2", pipeline="p", inputs={}, state="running")
    with pytest.raises(NotFound, match="the job is running: datums appear as they end"):
        find_datum(job, "abcd")
