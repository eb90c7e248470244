"""Pipeline specs through the API (in process and over the socket): create, list,
inspect, update, delete, and bad specs refused with every problem listed. Jobs need a
Docker engine and are covered end to end in tests/e2e/test_pipelines.py."""

from __future__ import annotations

import json
from typing import Any

from pfs_volume.meta import SqliteStore
from pfs_volume.pipelines.jobs import JobRecord, JobStore, new_job_id
from tests.protocol.conftest import Transport

SPEC = {
    "name": "wc",
    "input": {"repo": "text", "glob": "/*"},
    "transform": {"image": "busybox", "cmd": ["sh", "-c", "true"]},
}


def send(http: Transport, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    status, reply, _ = http.request(method, path, body)
    return status, reply


def test_pipeline_lifecycle(api_http: Transport, store: SqliteStore) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "text"}).encode())
    status, made = send(api_http, "POST", "/v1/pipelines", json.dumps(SPEC).encode())
    assert status == 201 and made["name"] == "wc" and made["output"]["repo"] == "wc"
    assert store.get_repo("wc") is not None, "the output repo is made with the pipeline"
    status, again = send(api_http, "POST", "/v1/pipelines", json.dumps(SPEC).encode())
    assert status == 409 and "exists already" in again["error"]["message"]
    assert [p["name"] for p in send(api_http, "GET", "/v1/pipelines")[1]["pipelines"]] == ["wc"]
    status, shown = send(api_http, "GET", "/v1/pipelines/wc")
    assert status == 200 and shown["jobs"] == [] and shown["transform"]["image"] == "busybox"
    yaml_spec = (
        "name: wc\ninput: {repo: text, glob: /*}\n"
        "transform: {image: 'busybox:2', cmd: [sh, -c, 'true']}\nparallelism: 3\n"
    )
    status, updated = send(api_http, "PUT", "/v1/pipelines/wc", yaml_spec.encode())
    assert status == 200 and updated["parallelism"] == 3
    assert send(api_http, "GET", "/v1/pipelines/wc")[1]["transform"]["image"] == "busybox:2"
    status, wrong = send(api_http, "PUT", "/v1/pipelines/other", yaml_spec.encode())
    assert status == 400 and "not 'other'" in wrong["error"]["message"]
    assert send(api_http, "DELETE", "/v1/pipelines/wc")[0] == 200
    assert send(api_http, "GET", "/v1/pipelines/wc")[0] == 404
    assert send(api_http, "GET", "/v1/jobs")[1] == {"jobs": []}
    assert send(api_http, "GET", "/v1/jobs/nope")[0] == 404


def test_a_bad_spec_lists_every_problem_and_stores_nothing(
    api_http: Transport, store: SqliteStore
) -> None:
    bad = {"name": "a b", "input": {"repo": "text", "glob": "/../x"}, "transform": {"cmd": []}}
    status, reply = send(api_http, "POST", "/v1/pipelines", json.dumps(bad).encode())
    assert status == 400
    message = reply["error"]["message"]
    for path in ("name:", "input.glob:", "transform.image:", "transform.cmd:"):
        assert path in message, message
    status, reply = send(api_http, "POST", "/v1/pipelines", b"{not json or yaml: [")
    assert status == 400
    status, reply = send(api_http, "POST", "/v1/pipelines", json.dumps(SPEC).encode())
    assert status == 400 and "no repo 'text'" in reply["error"]["message"], "an unknown repo"
    assert store.list_documents("pipeline") == []


def test_provenance_needs_a_commit(api_http: Transport) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "plain"}).encode())
    assert send(api_http, "GET", "/v1/repos/nothing/commits/master/provenance")[0] == 404
    assert send(api_http, "GET", "/v1/repos/plain/commits/master/provenance")[0] == 404


def test_pipelines_must_form_a_dag_with_one_writer_per_output(api_http: Transport) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "text"}).encode())

    def spec(name: str, source: str, output: str) -> bytes:
        body = {**SPEC, "name": name, "input": {"repo": source}, "output": {"repo": output}}
        return json.dumps(body).encode()

    assert send(api_http, "POST", "/v1/pipelines", spec("a", "text", "a"))[0] == 201
    assert send(api_http, "POST", "/v1/pipelines", spec("b", "a", "b"))[0] == 201
    status, reply = send(api_http, "POST", "/v1/pipelines", spec("c", "b", "text"))
    assert status == 400 and "cycle (c -> a -> b -> c)" in reply["error"]["message"]
    status, reply = send(api_http, "POST", "/v1/pipelines", spec("d", "text", "b"))
    assert status == 400 and "pipeline b writes b/master" in reply["error"]["message"]
    assert [p["name"] for p in send(api_http, "GET", "/v1/pipelines")[1]["pipelines"]] == [
        "a",
        "b",
    ]


def test_every_problem_of_a_spec_comes_at_once_fields_repos_writer_and_cycle(
    api_http: Transport, store: SqliteStore
) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "text"}).encode())
    first = {**SPEC, "name": "a", "input": {"repo": "text"}, "output": {"repo": "shared"}}
    assert send(api_http, "POST", "/v1/pipelines", json.dumps(first).encode())[0] == 201
    bad = {
        "name": "b",
        "input": {"cross": [{"repo": "ghost"}, {"repo": "shared"}]},
        "transform": {"image": "busybox", "cmd": []},
        "output": {"repo": "text"},
    }
    status, reply = send(api_http, "POST", "/v1/pipelines", json.dumps(bad).encode())
    assert status == 400
    message = reply["error"]["message"]
    assert message.startswith("the pipeline spec has 3 problems:"), message
    assert "transform.cmd: " in message
    assert "input.cross[0].repo: there is no repo 'ghost' to read" in message
    assert "input.cross[1]: reads shared/master, which this pipeline feeds" in message
    assert "a cycle (b -> a -> b)" in message
    second = {**bad, "input": {"repo": "text", "name": "t"}, "output": {"repo": "shared"}}
    second["transform"] = {"image": "busybox", "cmd": ["true"]}
    status, reply = send(api_http, "POST", "/v1/pipelines", json.dumps(second).encode())
    assert (
        status == 400
        and "output: pipeline a writes shared/master already" in reply["error"]["message"]
    )
    assert [name for name, _b, _v in store.list_documents("pipeline")] == ["a"]


def test_pipeline_controls_refuse_bad_input_and_change_nothing(api_http: Transport) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "text"}).encode())
    assert send(api_http, "POST", "/v1/pipelines", json.dumps(SPEC).encode())[0] == 201
    status, reply = send(
        api_http, "PUT", "/v1/pipelines/wc?reprocess=maybe", json.dumps(SPEC).encode()
    )
    assert status == 400 and "reprocess must be true or false" in reply["error"]["message"]
    for route in ("/v1/pipelines/nope/stop", "/v1/pipelines/nope/start"):
        status, reply = send(api_http, "POST", route)
        assert status == 404 and "no pipeline 'nope'" in reply["error"]["message"]
    for timeout in ("abc", "31", "-1", "nan", "inf"):
        status, reply = send(api_http, "GET", f"/v1/jobs/x/wait?timeout={timeout}")
        assert (
            status == 400
            and "timeout must be a number of seconds from 0 to 30" in reply["error"]["message"]
        ), (timeout, reply)
    assert send(api_http, "GET", "/v1/jobs/nope/wait?timeout=0")[0] == 404
    assert send(api_http, "GET", "/v1/repos/text/commits/master/wait?timeout=0")[0] == 404
    status, stopped = send(api_http, "POST", "/v1/pipelines/wc/stop")
    assert status == 200 and stopped == {"stopped": "wc", "killed": []}
    assert send(api_http, "GET", "/v1/pipelines/wc")[1]["stopped"] is True
    assert send(api_http, "POST", "/v1/pipelines/wc/start")[1] == {"started": "wc"}
    assert send(api_http, "GET", "/v1/pipelines/wc")[1]["stopped"] is False


def test_datums_and_logs_of_an_unknown_job_or_datum_say_what_was_asked(
    api_http: Transport, store: SqliteStore
) -> None:
    status, reply = send(api_http, "GET", "/v1/jobs/nope/datums")
    assert status == 404 and "no job 'nope'" in reply["error"]["message"]
    status, reply = send(api_http, "GET", "/v1/jobs/nope/datums/abcd")
    assert status == 404 and "no job 'nope'" in reply["error"]["message"]
    status, reply = send(api_http, "GET", "/v1/jobs/nope/logs?follow=true")
    assert status == 404 and "no job 'nope'" in reply["error"]["message"]
    status, reply = send(api_http, "GET", "/v1/jobs/nope/logs?follow=yes")
    assert status == 400 and "follow must be true or false, not 'yes'" in reply["error"]["message"]
    job = JobRecord(id=new_job_id(), pipeline="p", inputs={}, state="success")
    JobStore(store).add(job)
    status, reply = send(api_http, "GET", f"/v1/jobs/{job.id}/datums")
    assert status == 200 and reply == {"job": job.id, "state": "success", "datums": []}
    status, reply = send(api_http, "GET", f"/v1/jobs/{job.id}/datums/zz")
    assert status == 400 and "'zz' is not a datum id" in reply["error"]["message"]
    status, reply = send(api_http, "GET", f"/v1/jobs/{job.id}/datums/abcd")
    assert status == 404 and f"job {job.id} has no datum 'abcd'" in reply["error"]["message"]


def test_creating_a_pipeline_whose_image_cannot_be_checked_warns(api_http: Transport) -> None:
    send(api_http, "POST", "/v1/repos", json.dumps({"name": "text"}).encode())
    status, made = send(api_http, "POST", "/v1/pipelines", json.dumps(SPEC).encode())
    assert status == 201
    # No engine is reachable here: the pipeline is made, and the answer says so.
    [warning] = made["warnings"]
    assert "could not ask the Docker engine" in warning and "'busybox'" in warning, warning
