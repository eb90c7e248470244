"""Merge and revert of folder-level changes, through the API and the CLI, on real btrfs:
the cases that used to lose a side silently. Each either merges with both sides' changes
or is refused with every conflicting path and what each side did, changing nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.transport import UnixSocketServer
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app
from tests.cli_run import invoke
from tests.protocol.conftest import Transport
from tests.trees_model import read_tree

Change = Callable[[Path], None]


@pytest.fixture
def api_socket_for(
    repos: RepoService, volumes: VolumeService, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Serve the API on a real unix socket when the test asks (for the CLI)."""
    servers: list[UnixSocketServer] = []

    def serve() -> str:
        server = UnixSocketServer(api_app(repos, volumes), tmp_path / "cli.sock", "api")
        server.start()
        servers.append(server)
        return str(server.path)

    yield serve
    for server in servers:
        server.stop()


def commit(http: Transport, repos: RepoService, branch: str, change: Change) -> str:
    change(repos.working_copy("r", branch))
    status, body, _ = http.request("POST", f"/v1/repos/r/branches/{branch}/commit", b"{}")
    assert status == 200 and body["commit"] is not None, body
    return str(body["commit"]["id"])


def merge(http: Transport, source: str, target: str, **extra: str) -> tuple[int, Any]:
    status, body, _ = http.request(
        "POST",
        f"/v1/repos/r/branches/{target}/merge",
        json.dumps({"from": source, **extra}).encode(),
    )
    return status, body


def head_tree(repos: RepoService, branch: str) -> dict[str, Any]:
    head = repos.get_branch("r", branch).head or ""
    return read_tree(repos.commit_path("r", head))


def start(http: Transport, repos: RepoService) -> None:
    repos.create_repo("r")

    def base(root: Path) -> None:
        (root / "d" / "sub").mkdir(parents=True)
        (root / "d" / "f").write_text("1")
        (root / "d" / "sub" / "g").write_text("1")
        (root / "x").write_text("x")

    commit(http, repos, "master", base)
    repos.create_branch("r", "dev", parse_ref("master"))


def rename_d(root: Path) -> None:
    (root / "d").rename(root / "e")


def edit_f(root: Path) -> None:
    (root / "d" / "f").write_text("2")


def add_in_d(root: Path) -> None:
    (root / "d" / "new").write_text("n")


def delete_d(root: Path) -> None:
    for inner in ("d/sub/g", "d/f"):
        (root / inner).unlink()
    (root / "d" / "sub").rmdir()
    (root / "d").rmdir()


def chmod_d(root: Path) -> None:
    (root / "d").chmod(0o700)


@pytest.mark.parametrize(
    ("ours", "theirs", "path", "ours_did", "theirs_did"),
    [
        (rename_d, edit_f, "d/f", "deleted", "modified"),
        (edit_f, rename_d, "d/f", "modified", "deleted"),
        (delete_d, edit_f, "d/f", "deleted", "modified"),
        (delete_d, add_in_d, "d/new", "deleted the folder d", "added a file"),
        (add_in_d, delete_d, "d/new", "added a file", "deleted the folder d"),
    ],
)
def test_folder_changes_against_changes_inside_are_conflicts(
    api_http: Transport,
    repos: RepoService,
    ours: Change,
    theirs: Change,
    path: str,
    ours_did: str,
    theirs_did: str,
) -> None:
    start(api_http, repos)
    head = commit(api_http, repos, "master", ours)
    commit(api_http, repos, "dev", theirs)
    before = head_tree(repos, "master")
    status, body = merge(api_http, "dev", "master")
    assert status == 409 and body["error"]["code"] == "merge_conflict"
    assert {"path": path, "path_encoding": "utf-8", "ours": ours_did, "theirs": theirs_did} in body[
        "error"
    ]["conflicts"]
    assert f"{path} (master: {ours_did}; dev: {theirs_did})" in body["error"]["message"]
    assert repos.get_branch("r", "master").head == head
    assert head_tree(repos, "master") == before
    assert read_tree(repos.working_copy("r", "master")) == before


def test_a_folder_rename_merges_with_changes_elsewhere(
    api_http: Transport, repos: RepoService
) -> None:
    start(api_http, repos)
    commit(api_http, repos, "master", rename_d)
    commit(api_http, repos, "dev", lambda root: (root / "x").write_text("dev"))
    status, body = merge(api_http, "dev", "master")
    assert status == 200 and body["outcome"] == "merged"
    tree = head_tree(repos, "master")
    assert tree["e/f"][2] == b"1" and tree["e/sub/g"][2] == b"1" and tree["x"][2] == b"dev"
    assert "d" not in tree and "d/f" not in tree
    # And from the other side: the rename comes in whole, nothing left at the old place.
    status, body = merge(api_http, "master", "dev")
    assert status == 200 and body["outcome"] == "fast-forward"


def test_a_folder_mode_change_and_an_addition_inside_both_survive(
    api_http: Transport, repos: RepoService
) -> None:
    start(api_http, repos)
    commit(api_http, repos, "master", chmod_d)
    commit(api_http, repos, "dev", add_in_d)
    assert merge(api_http, "dev", "master")[0] == 200
    tree = head_tree(repos, "master")
    assert tree["d"] == ("dir", 0o700, None) and tree["d/new"][2] == b"n"
    assert tree["d/f"][2] == b"1"


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_file_replaced_by_a_folder_or_a_symlink(
    api_http: Transport, repos: RepoService, kind: str
) -> None:
    start(api_http, repos)

    def replace_x(root: Path) -> None:
        (root / "x").unlink()
        if kind == "folder":
            (root / "x").mkdir()
            (root / "x" / "in").write_text("i")
        else:
            (root / "x").symlink_to("/etc/passwd")

    commit(api_http, repos, "dev", replace_x)
    commit(api_http, repos, "master", lambda root: (root / "y").write_text("y"))
    assert merge(api_http, "dev", "master")[0] == 200
    tree = head_tree(repos, "master")
    if kind == "folder":
        assert tree["x"][0] == "dir" and tree["x/in"][2] == b"i"
    else:
        assert tree["x"] == ("symlink", 0o777, "/etc/passwd")
    # The same replacement against an edit of x is a conflict.
    commit(api_http, repos, "dev", lambda root: (root / "z").write_text("z"))
    status, body = merge(api_http, "master", "dev")
    assert status == 200  # dev has all of master's changes but y: no conflict
    commit(api_http, repos, "master", lambda root: (root / "y").write_text("y2"))
    commit(api_http, repos, "dev", lambda root: (root / "y").write_text("y3"))
    status, body = merge(api_http, "dev", "master")
    assert status == 409 and [c["path"] for c in body["error"]["conflicts"]] == ["y"]


@pytest.mark.parametrize("change", [rename_d, chmod_d])
def test_revert_of_a_folder_change_with_later_edits_inside(
    api_http: Transport, repos: RepoService, change: Change
) -> None:
    start(api_http, repos)
    folder_commit = commit(api_http, repos, "master", change)
    inside = "e" if change is rename_d else "d"
    head = commit(api_http, repos, "master", lambda root: (root / inside / "f").write_text("3"))
    status, body, _ = api_http.request(
        "POST", "/v1/repos/r/branches/master/revert", json.dumps({"commit": folder_commit}).encode()
    )
    if change is rename_d:
        # Undoing the rename would delete e/f, which the branch changed since.
        assert status == 409
        assert {
            "path": "e/f",
            "path_encoding": "utf-8",
            "ours": "modified",
            "theirs": "deleted",
        } in body["error"]["conflicts"]
        assert repos.get_branch("r", "master").head == head
        return
    # Undoing the mode change keeps the later edit inside.
    assert status == 200
    tree = head_tree(repos, "master")
    assert tree["d"] == ("dir", 0o755, None) and tree["d/f"][2] == b"3"


def test_revert_of_a_rename_with_no_later_edits_brings_the_folder_back(
    api_http: Transport, repos: RepoService
) -> None:
    start(api_http, repos)
    before = head_tree(repos, "master")
    renamed = commit(api_http, repos, "master", rename_d)
    status, body, _ = api_http.request(
        "POST", "/v1/repos/r/branches/master/revert", json.dumps({"commit": renamed}).encode()
    )
    assert status == 200 and body["commit"]["parents"] == [renamed]
    assert head_tree(repos, "master") == before


def test_merge_commits_record_both_parents_and_remerge_only_sees_new_changes(
    api_http: Transport, repos: RepoService, api_socket_for: Callable[[], str]
) -> None:
    start(api_http, repos)
    ours = commit(api_http, repos, "master", lambda root: (root / "x").write_text("m1"))
    theirs = commit(api_http, repos, "dev", lambda root: (root / "d" / "f").write_text("dev1"))
    status, body = merge(api_http, "dev", "master")
    merged = body["commit"]
    assert merged["parents"] == [ours, theirs] and merged["parent"] == ours
    # dev keeps working on the same file, master too on its own: merging again only
    # sees dev's new change (the base is now dev's merged head), so no conflict on d/f.
    commit(api_http, repos, "dev", lambda root: (root / "d" / "f").write_text("dev2"))
    commit(api_http, repos, "master", lambda root: (root / "x").write_text("m2"))
    status, body = merge(api_http, "dev", "master")
    assert status == 200, body
    tree = head_tree(repos, "master")
    assert tree["d/f"][2] == b"dev2" and tree["x"][2] == b"m2"
    # Merging master into dev now: dev's head is an ancestor, so a fast-forward.
    assert merge(api_http, "master", "dev")[1]["outcome"] == "fast-forward"

    # ^2 names the merged head, ~1 the first parent; log walks both lines.
    socket = api_socket_for()
    second = _cli(socket, "commit", "inspect", "r@master^2", "--json")
    assert (
        second["id"] == repos.get_commit("r", repos.get_branch("r", "master").head or "").parents[1]
    )
    assert (
        _cli(socket, "commit", "inspect", "r@master^1", "--json")["id"]
        == _cli(socket, "commit", "inspect", "r@master~1", "--json")["id"]
    )
    everything = [c["id"] for c in _cli(socket, "log", "r", "--json")]
    first_line = [c["id"] for c in _cli(socket, "log", "r", "--first-parent", "--json")]
    assert theirs in everything and theirs not in first_line
    assert set(first_line) < set(everything)
    text = invoke(["--api", socket, "log", "r", "--limit", "1"]).stdout
    header, row = text.splitlines()
    top = repos.get_commit("r", repos.get_branch("r", "master").head or "")
    assert "PARENTS" in header and " ".join(p[:12] for p in top.parents) in row
    missing = invoke(["--api", socket, "commit", "inspect", "r@master~1^2"])
    assert missing.exit_code != 0 and "parent" in (missing.stdout + missing.stderr)


def test_merge_writes_special_files_as_what_they_are(
    api_http: Transport, repos: RepoService
) -> None:
    start(api_http, repos)

    def specials(root: Path) -> None:
        os.mkfifo(root / "fifo")
        os.mknod(root / "null", 0o600 | 0o020000, os.makedev(1, 3))
        (root / "link").symlink_to("../../../etc/shadow")
        (root / "suid").write_text("#!/bin/sh\n")
        (root / "suid").chmod(0o4755)

    commit(api_http, repos, "dev", specials)
    commit(api_http, repos, "master", lambda root: (root / "y").write_text("y"))
    assert merge(api_http, "dev", "master")[0] == 200
    head = repos.commit_path("r", repos.get_branch("r", "master").head or "")
    assert (head / "fifo").is_fifo() and (head / "null").is_char_device()
    assert os.readlink(head / "link") == "../../../etc/shadow"
    assert (head / "suid").stat().st_mode & 0o7777 == 0o4755


def _cli(socket: str, *args: str) -> Any:
    result = invoke(["--api", socket, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_merge_commit_carries_what_it_merged_in_provenance(
    api_http: Transport, repos: RepoService
) -> None:
    start(api_http, repos)
    (repos.working_copy("r", "dev") / "out").write_text("made by a job")
    source = "src@" + "a" * 32
    made = repos.commit_working_copy("r", "dev", "output", "pipeline", provenance=(source,))
    assert made is not None
    ours = commit(api_http, repos, "master", lambda root: (root / "x").write_text("m"))
    status, body = merge(api_http, "dev", "master")
    assert status == 200
    merged = body["commit"]["id"]
    status, reply, _ = api_http.request("GET", f"/v1/repos/r/commits/{merged}/provenance")
    assert status == 200
    assert reply["parents"] == [f"r@{ours}", f"r@{made.id}"]
    assert reply["upstream"] == [source]
