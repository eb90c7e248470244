"""Repos, branches, reset and explicit commits through the API (in process and over the
socket), on a real btrfs pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.meta import SqliteStore
from pfs_volume.volumes import VolumeService
from tests.protocol.conftest import Transport


def send(http: Transport, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, reply, _ = http.request(
        method, path, b"" if body is None else json.dumps(body).encode()
    )
    return status, reply


def commit_files(volumes: VolumeService, name: str, files: dict[str, str]) -> None:
    mount_id = f"m-{name}-{'-'.join(files)}"
    path = volumes.mount(name, mount_id)
    for file, text in files.items():
        (path / file).write_text(text)
    volumes.unmount(name, mount_id)


def heads(http: Transport, repo: str) -> dict[str, str | None]:
    return {
        b["name"]: b["head"] for b in send(http, "GET", f"/v1/repos/{repo}/branches")[1]["branches"]
    }


def test_create_repo_with_a_description(api_http: Transport, store: SqliteStore) -> None:
    status, repo = send(api_http, "POST", "/v1/repos", {"name": "photos", "description": "cats"})
    assert status == 201 and repo["name"] == "photos" and repo["description"] == "cats"
    assert send(api_http, "GET", "/v1/repos/photos")[1]["branches"][0]["name"] == "master"
    status, body = send(api_http, "POST", "/v1/repos", {"name": "photos"})
    assert (status, body["error"]["code"]) == (409, "conflict")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([1], "must be a JSON object"),
        ({"name": "x", "colour": "red"}, "unknown field(s) colour"),
        ({}, "missing field(s) name"),
        ({"name": 7}, "field name must be a str"),
        ({"name": ".x"}, "must start with a letter or digit"),
        ({"name": "x", "description": "d" * 5000}, "at most 4096"),
    ],
)
def test_bad_repo_bodies_change_nothing(
    api_http: Transport, store: SqliteStore, body: Any, says: str
) -> None:
    status, reply = send(api_http, "POST", "/v1/repos", body)
    assert status == 400 and says in reply["error"]["message"]
    assert store.list_repos() == []


def test_branch_create_from_refs_and_delete(api_http: Transport, volumes: VolumeService) -> None:
    commit_files(volumes, "pfs/r", {"a": "1"})
    commit_files(volumes, "pfs/r", {"b": "2"})
    master = heads(api_http, "r")["master"]
    assert master is not None
    first = send(api_http, "GET", "/v1/repos/r/commits/master~1")[1]["id"]
    assert (
        send(api_http, "POST", "/v1/repos/r/branches", {"name": "old", "from": "master~1"})[1][
            "head"
        ]
        == first
    )
    assert (
        send(api_http, "POST", "/v1/repos/r/branches", {"name": "p", "from": master[:8]})[1]["head"]
        == master
    )
    assert send(api_http, "POST", "/v1/repos/r/branches", {"name": "dflt"})[1]["head"] == master
    status, body = send(api_http, "POST", "/v1/repos/r/branches", {"name": "old"})
    assert (status, body["error"]["code"]) == (409, "conflict")
    status, body = send(api_http, "POST", "/v1/repos/r/branches", {"name": "x", "from": "zzzzzz"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    path = volumes.mount("pfs/r/old", "busy")
    assert sorted(p.name for p in path.iterdir()) == ["a"]
    status, body = send(api_http, "DELETE", "/v1/repos/r/branches/old")
    assert (status, body["error"]["code"]) == (409, "in_use")
    volumes.unmount("pfs/r/old", "busy")
    assert send(api_http, "DELETE", "/v1/repos/r/branches/old") == (
        200,
        {"deleted": "r/old", "pipelines_deleted": []},
    )
    assert "old" not in heads(api_http, "r")
    assert send(api_http, "GET", f"/v1/repos/r/commits/{first}")[0] == 200, "commits stay"


def test_reset_moves_the_head_and_the_working_copy(
    api_http: Transport, volumes: VolumeService
) -> None:
    commit_files(volumes, "pfs/r", {"a": "1"})
    commit_files(volumes, "pfs/r", {"b": "2"})
    newest = heads(api_http, "r")["master"]
    status, body = send(api_http, "POST", "/v1/repos/r/branches/master/reset", {"ref": "master~1"})
    assert status == 200 and body["old_head"] == newest
    assert body["head"] == send(api_http, "GET", f"/v1/repos/r/commits/{newest}")[1]["parent"]
    path = volumes.mount("pfs/r", "after-reset")
    assert sorted(p.name for p in path.iterdir()) == ["a"]
    status, body = send(api_http, "POST", "/v1/repos/r/branches/master/reset", {"ref": newest})
    assert (status, body["error"]["code"]) == (409, "in_use")
    volumes.unmount("pfs/r", "after-reset")
    assert send(api_http, "POST", "/v1/repos/r/branches/master/reset", {"ref": newest})[0] == 200
    assert heads(api_http, "r")["master"] == newest
    status, body = send(api_http, "POST", "/v1/repos/r/branches/master/reset", {"ref": 3})
    assert (status, body["error"]["code"]) == (400, "invalid_request")


def test_reset_refuses_a_working_copy_with_uncommitted_changes(
    api_http: Transport, volumes: VolumeService
) -> None:
    commit_files(volumes, "pfs/r", {"a": "1"})
    commit_files(volumes, "pfs/r", {"b": "2"})
    Path(volumes.repos.branch_path("r", "master"), "stray").write_text("not committed")
    status, body = send(api_http, "POST", "/v1/repos/r/branches/master/reset", {"ref": "master~1"})
    assert status == 409 and "changes no commit holds" in body["error"]["message"]
    assert (volumes.repos.branch_path("r", "master") / "stray").exists()


def test_explicit_commit_while_a_container_keeps_running(
    api_http: Transport, volumes: VolumeService
) -> None:
    path = volumes.mount("pfs/r", "running")
    (path / "a").write_text("first")
    status, body = send(api_http, "POST", "/v1/repos/r/branches/master/commit", {"message": "cp"})
    assert status == 200 and body["commit"]["message"] == "cp" and body["commit"]["origin"] == "api"
    assert send(api_http, "POST", "/v1/repos/r/branches/master/commit", {})[1] == {"commit": None}
    (path / "b").write_text("later")
    volumes.unmount("pfs/r", "running")
    log = send(api_http, "GET", "/v1/repos/r/log")[1]["commits"]
    assert [c["origin"] for c in log] == ["unmount", "api"]
    first = volumes.repos.commit_path("r", log[1]["id"])
    assert sorted(p.name for p in first.iterdir()) == ["a"]
