"""The pfs HTTP API over real services, in process and over the socket."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pfs_volume.volumes import VolumeService
from tests.protocol.conftest import Transport

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def commit(volumes: VolumeService, name: str, mount_id: str, files: dict[str, str]) -> None:
    path = volumes.mount(name, mount_id)
    for file, text in files.items():
        (path / file).write_text(text)
    volumes.unmount(name, mount_id)


@pytest.fixture
def history(volumes: VolumeService) -> VolumeService:
    commit(volumes, "pfs/photos", "m1", {"a": "1"})
    commit(volumes, "pfs/photos", "m2", {"b": "2"})
    commit(volumes, "pfs/photos/dev", "m3", {"c": "3"})
    return volumes


def test_repos_branches_log_and_commits(api_http: Transport, history: VolumeService) -> None:
    status, body, _ = api_http.request("GET", "/v1/repos")
    assert status == 200 and [r["name"] for r in body["repos"]] == ["photos"]
    status, repo, _ = api_http.request("GET", "/v1/repos/photos")
    assert status == 200 and repo["commit_count"] == 3 and repo["mounts"] == []
    assert [b["name"] for b in repo["branches"]] == ["dev", "master"]
    status, body, _ = api_http.request("GET", "/v1/repos/photos/branches")
    heads = {b["name"]: b["head"] for b in body["branches"]}
    status, body, _ = api_http.request("GET", "/v1/repos/photos/log")
    log = body["commits"]
    assert log[0]["id"] == heads["master"] and len(log) == 2
    assert log[0]["parent"] == log[1]["id"] and log[1]["parent"] is None
    for c in log:
        assert set(c) == {
            "id",
            "parent",
            "repo",
            "branch",
            "created",
            "message",
            "origin",
            "pruned",
            "parents",
            "holders",
            "dead_holders",
            "copies",
            "provenance",
            "job",
        }
        assert c["copies"] == len(c["holders"]) == 1 and c["dead_holders"] == []
        assert RFC3339_UTC.fullmatch(c["created"]) and c["origin"] == "unmount"
    status, body, _ = api_http.request(
        "GET", "/v1/repos/photos/log", params={"ref": "dev", "limit": "1"}
    )
    assert [c["id"] for c in body["commits"]] == [heads["dev"]]
    status, one, _ = api_http.request("GET", "/v1/repos/photos/commits/master~1")
    assert status == 200 and {k: one[k] for k in log[1]} == log[1]
    assert (one["size"], one["files_changed"]) == (1, 1)  # the first commit: file a, 1 byte
    status, one, _ = api_http.request("GET", f"/v1/repos/photos/commits/{log[0]['id'][:7]}")
    assert one == {**log[0], "size": 2, "files_changed": 1}  # files a and b; b is new


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "code", "says"),
    [
        ("GET", "/v1/repos/nope", None, 404, "not_found", "no repo 'nope'"),
        ("GET", "/v1/repos/..x", None, 400, "invalid_name", "must start with a letter"),
        ("GET", "/v1/repos/photos/commits/zzzzzz", None, 404, "not_found", "no branch or"),
        ("GET", "/v1/repos/photos/commits/a~x", None, 400, "invalid_name", "'~' must be"),
        ("GET", "/v1/repos/photos/log", {"limit": "0"}, 400, "invalid_request", "1 to"),
        ("GET", "/v1/repos/photos/log", {"limit": "x"}, 400, "invalid_request", "whole num"),
        ("GET", "/v1/nothing", None, 404, "not_found", "not found"),
        ("PUT", "/v1/repos", None, 405, "method_not_allowed", "not allowed"),
        ("DELETE", "/v1/repos/nope", None, 404, "not_found", "no repo 'nope'"),
    ],
)
def test_errors_are_json_with_a_code(
    api_http: Transport,
    history: VolumeService,
    method: str,
    path: str,
    params: dict[str, str] | None,
    status: int,
    code: str,
    says: str,
) -> None:
    got, body, content_type = api_http.request(method, path, params=params)
    assert (got, body["error"]["code"]) == (status, code)
    assert says in body["error"]["message"].lower() or says in body["error"]["message"]
    assert content_type == "application/json"
    assert api_http.request("GET", "/v1/repos/photos")[1]["commit_count"] == 3


def test_delete_refused_while_mounted_then_done(
    api_http: Transport, history: VolumeService
) -> None:
    path = history.mount("pfs/photos", "busy")
    status, body, _ = api_http.request("DELETE", "/v1/repos/photos")
    assert (status, body["error"]["code"]) == (409, "in_use")
    assert Path(path, "a").exists()
    history.unmount("pfs/photos", "busy")
    assert api_http.request("DELETE", "/v1/repos/photos")[:2] == (
        200,
        {"deleted": "photos", "pipelines_deleted": []},
    )
    assert api_http.request("GET", "/v1/repos")[1] == {"repos": []}


def test_mounts_can_be_listed_and_released(api_http: Transport, history: VolumeService) -> None:
    path = history.mount("pfs/photos", "stale")
    (path / "z").write_text("left behind by a crash")
    status, body, _ = api_http.request("GET", "/v1/mounts")
    assert status == 200 and [m["id"] for m in body["mounts"]] == ["stale"]
    assert api_http.request("DELETE", "/v1/mounts/stale")[:2] == (200, {"released": "stale"})
    assert api_http.request("GET", "/v1/mounts")[1] == {"mounts": []}
    assert api_http.request("GET", "/v1/repos/photos")[1]["commit_count"] == 4
    status, body, _ = api_http.request("DELETE", "/v1/mounts/stale")
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("limit", ["²", "٣", "99999999999999", "1e3", "-1", ""])
def test_odd_limits_are_refused(api_http: Transport, history: VolumeService, limit: str) -> None:
    status, body, _ = api_http.request("GET", "/v1/repos/photos/log", params={"limit": limit})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
