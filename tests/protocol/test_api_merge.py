"""Merge through the API (in process and over the socket) on a real btrfs pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pfs_volume.names import parse_ref
from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.conftest import Transport


def edit(volumes: VolumeService, branch: str, files: dict[str, str | None]) -> str:
    name = f"pfs/r/{branch}"
    mount_id = f"{branch}-{sorted(files)}-{len(volumes.store.list_commits('r'))}"
    path = volumes.mount(name, mount_id)
    for file, text in files.items():
        if text is None:
            (path / file).unlink()
        else:
            (path / file).write_text(text)
    volumes.unmount(name, mount_id)
    return volumes.repos.get_branch("r", branch).head or ""


def tree(volumes: VolumeService, branch: str) -> dict[str, str]:
    root = volumes.repos.commit_path("r", volumes.repos.get_branch("r", branch).head or "")
    return {p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file()}


def merge(http: Transport, source: str, target: str, **extra: str) -> tuple[int, Any]:
    status, body, _ = http.request(
        "POST",
        f"/v1/repos/r/branches/{target}/merge",
        json.dumps({"from": source, **extra}).encode(),
    )
    return status, body


def forked(volumes: VolumeService) -> None:
    edit(volumes, "master", {"shared": "base", "m": "1"})
    volumes.repos.create_branch("r", "dev", parse_ref("master"))


def test_fast_forward_and_up_to_date(api_http: Transport, volumes: VolumeService) -> None:
    forked(volumes)
    dev = edit(volumes, "dev", {"d": "1"})
    assert merge(api_http, "master", "dev")[1]["outcome"] == "up-to-date"
    status, body = merge(api_http, "dev", "master")
    assert status == 200 and body == {"outcome": "fast-forward", "head": dev, "commit": None}
    assert volumes.repos.get_branch("r", "master").head == dev


def test_three_way_merge_of_separate_changes(api_http: Transport, volumes: VolumeService) -> None:
    forked(volumes)
    edit(volumes, "dev", {"d": "dev", "m": None})
    edit(volumes, "master", {"x": "master"})
    edit(volumes, "dev", {"same": "same"})
    edit(volumes, "master", {"same": "same"})  # the same change on both sides is fine
    status, body = merge(api_http, "dev", "master")
    assert status == 200 and body["outcome"] == "merged"
    assert body["commit"]["origin"] == "merge"
    assert tree(volumes, "master") == {"d": "dev", "same": "same", "shared": "base", "x": "master"}
    # Merging again after more work on both sides: the first merge's paths do not clash.
    edit(volumes, "dev", {"d2": "more"})
    edit(volumes, "master", {"x2": "more"})
    assert merge(api_http, "dev", "master")[1]["outcome"] == "merged"
    assert tree(volumes, "master")["d2"] == "more" and tree(volumes, "master")["x2"] == "more"


def test_conflicts_are_listed_and_change_nothing_unless_a_strategy_settles_them(
    api_http: Transport, volumes: VolumeService
) -> None:
    forked(volumes)
    edit(volumes, "dev", {"shared": "dev", "d": "1"})
    head = edit(volumes, "master", {"shared": "master"})
    status, body = merge(api_http, "dev", "master")
    assert status == 409 and body["error"]["code"] == "merge_conflict"
    assert "shared (master: modified; dev: modified)" in body["error"]["message"]
    assert body["error"]["conflicts"] == [
        {"path": "shared", "path_encoding": "utf-8", "ours": "modified", "theirs": "modified"}
    ]
    assert volumes.repos.get_branch("r", "master").head == head
    assert merge(api_http, "dev", "master", strategy="ours")[0] == 200
    assert tree(volumes, "master")["shared"] == "master" and tree(volumes, "master")["d"] == "1"
    edit(volumes, "dev", {"shared": "dev again"})
    assert merge(api_http, "dev", "master", strategy="theirs")[0] == 200
    assert tree(volumes, "master")["shared"] == "dev again"


def test_bad_merges_are_refused(api_http: Transport, volumes: VolumeService) -> None:
    forked(volumes)
    for body, says in [
        ({"from": "dev", "strategy": "mine"}, "ours or theirs"),
        ({"from": "master"}, "into itself"),
        ({"from": "nope"}, "no branch"),
    ]:
        status, reply, _ = api_http.request(
            "POST", "/v1/repos/r/branches/master/merge", json.dumps(body).encode()
        )
        assert 400 <= status < 500 and says in reply["error"]["message"]


def test_merge_verb(api_socket: str, tmp_path: Path) -> None:
    result = invoke(["--api", api_socket, "merge", "photos/dev", "--into", "master"])
    # dev started at master's head in this fixture, so this is a fast-forward.
    assert result.exit_code == 0 and result.stdout.startswith("fast-forward: photos/master is at ")
    files = json.loads(invoke(["--api", api_socket, "ls", "photos@master", "--json"]).stdout)
    assert [e["name"] for e in files] == ["a", "b", "c"]
