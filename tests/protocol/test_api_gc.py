"""Retention: gc prunes old commits' data, keeps heads and mounted commits, and a pruned
commit stays in the log and says so when used. Real btrfs, through the API."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pfs_volume.volumes import VolumeService
from tests.protocol.conftest import Transport


def send(http: Transport, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, reply, _ = http.request(
        method, path, b"" if body is None else json.dumps(body).encode()
    )
    return status, reply


@pytest.fixture
def five(volumes: VolumeService) -> list[str]:
    """Five commits on master, each replacing a 4 MiB file; ids oldest first."""
    for n in range(5):
        path = volumes.mount("pfs/r", f"m{n}")
        (path / "big").write_bytes(os.urandom(4 * 1024 * 1024))
        volumes.unmount("pfs/r", f"m{n}")
    return [c.id for c in reversed(volumes.repos.store.list_commits("r"))]


def test_keep_last_prunes_the_rest_and_frees_space(
    api_http: Transport, volumes: VolumeService, five: list[str]
) -> None:
    volumes.mount(f"pfs/r@{five[1]}", "reader")
    status, body = send(api_http, "POST", "/v1/repos/r/gc", {"keep_last": 2})
    assert status == 200
    assert sorted(body["pruned"]) == sorted([five[0], five[2]]), "a mounted commit is kept"
    assert body["bytes_freed"] >= 4 * 1024 * 1024
    log = send(api_http, "GET", "/v1/repos/r/log")[1]["commits"]
    assert [c["id"] for c in log] == list(reversed(five)), "pruned commits stay in the log"
    assert [c["pruned"] for c in log] == [False, False, True, False, True]
    assert [(c["copies"], c["holders"]) for c in log if c["pruned"]] == [(0, [])] * 2
    assert all(c["copies"] == len(c["holders"]) == 1 for c in log if not c["pruned"])
    status, inspected = send(api_http, "GET", f"/v1/repos/r/commits/{five[0]}")
    assert status == 200 and inspected["pruned"] is True
    assert (inspected["copies"], inspected["holders"], inspected["dead_holders"]) == (0, [], [])
    assert not volumes.repos.commit_path("r", five[0]).exists()
    with pytest.raises(Exception, match="was pruned by gc"):
        volumes.mount(f"pfs/r@{five[0]}", "late")
    status, body = send(api_http, "GET", f"/v1/repos/r/commits/{five[0]}/files")
    assert status == 404 and "was pruned by gc" in body["error"]["message"]
    status, body = send(api_http, "POST", "/v1/repos/r/branches", {"name": "b", "from": five[0]})
    assert status == 404 and "was pruned by gc" in body["error"]["message"]
    volumes.unmount(f"pfs/r@{five[1]}", "reader")
    pruned = send(api_http, "POST", "/v1/repos/r/gc", {"keep_last": 0})[1]["pruned"]
    assert sorted(pruned) == sorted([five[1], five[3]])
    assert volumes.repos.commit_path("r", five[4]).exists(), "the head is always kept"


def test_older_than_keeps_recent_commits(api_http: Transport, five: list[str]) -> None:
    assert send(api_http, "POST", "/v1/repos/r/gc", {"older_than": "1h"})[1] == {
        "pruned": [],
        "bytes_freed": 0,
        "datum_outputs_freed": 0,
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "needs --keep-last N or --older-than"),
        ({"keep_last": -1}, "from 0 to 1,000,000,000"),
        ({"keep_last": 10**29}, "from 0 to 1,000,000,000"),
        ({"keep_last": "2"}, "must be a int"),
        ({"keep_last": True}, "must be an int"),
        ({"older_than": "soon"}, "not understood"),
        ({"keep_everything": 1}, "unknown field"),
    ],
)
def test_bad_gc_requests_prune_nothing(
    api_http: Transport, volumes: VolumeService, five: list[str], body: Any, says: str
) -> None:
    status, reply = send(api_http, "POST", "/v1/repos/r/gc", body)
    assert status == 400 and says in reply["error"]["message"]
    assert not any(c.pruned for c in volumes.repos.store.list_commits("r"))
