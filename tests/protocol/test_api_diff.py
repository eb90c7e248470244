"""Diff between commits through the API and the CLI, on a real btrfs pool."""

from __future__ import annotations

import json

from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.conftest import Transport


def test_diff_of_a_commit_and_between_two(api_http: Transport, volumes: VolumeService) -> None:
    path = volumes.mount("pfs/r", "m1")
    (path / "keep").write_text("1")
    (path / "old").write_text("x")
    (path / "gone").write_text("y")
    volumes.unmount("pfs/r", "m1")
    path = volumes.mount("pfs/r", "m2")
    (path / "old").rename(path / "new")
    (path / "gone").unlink()
    (path / "keep").write_text("2")
    (path / "added").write_text("z")
    volumes.unmount("pfs/r", "m2")
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": "master"})
    assert status == 200 and body["to"] == volumes.repos.get_branch("r", "master").head
    got = {(c["path"], c["kind"], c["old_path"]) for c in body["changes"]}
    assert got == {
        ("added", "added", None),
        ("gone", "deleted", None),
        ("keep", "modified", None),
        ("new", "renamed", "old"),
    }
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": "master~1"})
    assert body["from"] is None
    assert {c["path"] for c in body["changes"]} == {"gone", "keep", "old"}
    status, body, _ = api_http.request(
        "GET", "/v1/repos/r/diff", params={"from": "master", "to": "master~1"}
    )
    assert {(c["path"], c["kind"]) for c in body["changes"]} >= {
        ("added", "deleted"),
        ("gone", "added"),
    }
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": "zzzzzz"})
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff")
    assert status == 400 and "to is required" in body["error"]["message"]


def test_diff_verb(api_socket: str) -> None:
    result = invoke(["--api", api_socket, "diff", "photos@master"])
    assert result.exit_code == 0 and result.stdout.strip() == "A  b"
    result = invoke(["--api", api_socket, "diff", "photos@master~1", "photos@master", "--json"])
    assert [c["path"] for c in json.loads(result.stdout)["changes"]] == ["b"]
    result = invoke(["--api", api_socket, "diff", "photos@master", "x@y"])
    assert result.exit_code == 2 and "same repo" in result.stderr
