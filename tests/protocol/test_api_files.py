"""Files at any commit and writes without a container, through the API (in process and
over the socket) on a real btrfs pool; paths that climb out are refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pfs_volume.volumes import VolumeService
from tests.protocol.conftest import Transport

BLOB = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def tree(volumes: VolumeService, tmp_path: Path) -> str:
    """A commit with files, a folder, and links inside and out; its id."""
    path = volumes.mount("pfs/r", "m1")
    (path / "blob.bin").write_bytes(BLOB)
    (path / "docs" / "deep").mkdir(parents=True)
    (path / "docs" / "a.txt").write_text("alpha")
    (path / "docs" / "deep" / "b.txt").write_text("beta")
    (path / "inside").symlink_to("docs/a.txt")
    (path / "absolute").symlink_to("/etc/hostname")
    (path / "climbing").symlink_to("../../../../../../etc/hostname")
    volumes.unmount("pfs/r", "m1")
    head = volumes.repos.get_branch("r", "master").head
    assert head is not None
    return head


def test_list_a_commit(api_http: Transport, tree: str) -> None:
    status, body, _ = api_http.request("GET", f"/v1/repos/r/commits/{tree[:8]}/files")
    assert status == 200
    assert [(e["name"], e["kind"]) for e in body["entries"]] == [
        ("absolute", "symlink"),
        ("blob.bin", "file"),
        ("climbing", "symlink"),
        ("docs", "dir"),
        ("inside", "symlink"),
    ]
    assert next(e for e in body["entries"] if e["name"] == "blob.bin")["size"] == len(BLOB)
    status, body, _ = api_http.request(
        "GET", "/v1/repos/r/commits/master/files", params={"path": "/docs/deep"}
    )
    assert [e["name"] for e in body["entries"]] == ["b.txt"]


def raw(api_http: Transport, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    if api_http.session is None:
        response = api_http.app.test_client().get(path, query_string=params)
        return response.status_code, response.get_data()
    url = "http+unix://" + str(api_http.socket).replace("/", "%2F") + path
    reply = api_http.session.get(url, params=params, timeout=60)
    return reply.status_code, reply.content


def test_read_files_and_folders(api_http: Transport, tree: str) -> None:
    assert raw(api_http, "/v1/repos/r/commits/master/content", {"path": "blob.bin"}) == (200, BLOB)
    status, data = raw(api_http, "/v1/repos/r/commits/master/tar", {"path": "docs"})
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("docs/deep/b.txt").read() == b"beta"  # type: ignore[union-attr]
    assert names == ["docs", "docs/a.txt", "docs/deep", "docs/deep/b.txt"]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("../../etc/hostname", 400, "climbs out"),
        ("docs/../../x", 400, "climbs out"),
        ("absolute", 400, "is a symlink, not a regular file"),
        ("climbing", 400, "is a symlink, not a regular file"),
        ("inside", 400, "is a symlink, not a regular file"),
        ("absolute/x", 400, "/absolute is a symlink (to /etc/hostname), not a folder"),
        ("inside/x", 400, "/inside is a symlink (to docs/a.txt), not a folder"),
        ("docs/a.txt/x", 404, "has no /docs/a.txt/x (/docs/a.txt is a file, not a folder)"),
        ("docs", 400, "is a folder"),
        ("nope.txt", 404, "has no /nope.txt"),
    ],
)
def test_paths_that_climb_out_or_do_not_exist_are_refused(
    api_http: Transport, tree: str, path: str, status: int, says: str
) -> None:
    got, body, _ = api_http.request(
        "GET", "/v1/repos/r/commits/master/content", params={"path": path}
    )
    assert got == status and says in body["error"]["message"]


def test_put_and_rm_make_commits(api_http: Transport, volumes: VolumeService, tree: str) -> None:
    status, body, _ = api_http.request(
        "PUT",
        "/v1/repos/r/branches/master/files",
        b"new text",
        params={"path": "/notes/new.txt", "message": "add"},
    )
    assert status == 200 and body["commit"]["message"] == "add"
    assert body["commit"]["origin"] == "put" and body["commit"]["parent"] == tree
    assert raw(api_http, "/v1/repos/r/commits/master/content", {"path": "notes/new.txt"}) == (
        200,
        b"new text",
    )
    status, body, _ = api_http.request(
        "DELETE", "/v1/repos/r/branches/master/files", params={"path": "docs"}
    )
    assert status == 400 and "use -r" in body["error"]["message"]
    status, body, _ = api_http.request(
        "DELETE", "/v1/repos/r/branches/master/files", params={"path": "docs", "recursive": "true"}
    )
    assert status == 200 and body["commit"]["origin"] == "rm"
    names = [
        e["name"] for e in api_http.request("GET", "/v1/repos/r/commits/master/files")[1]["entries"]
    ]
    assert "docs" not in names and "notes" in names
    old = [
        e["name"]
        for e in api_http.request("GET", f"/v1/repos/r/commits/{tree}/files")[1]["entries"]
    ]
    assert "docs" in old, "older commits never change"
    assert volumes.store.count_commits("r") == 3


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"path": "../x"}, 400, "climbs out"),
        ({"path": "/"}, 400, "not the root"),
        ({}, 400, "path is required"),
        ({"path": "docs"}, 400, "is a folder"),
    ],
)
def test_bad_puts_change_nothing(
    api_http: Transport,
    volumes: VolumeService,
    tree: str,
    params: dict[str, str],
    status: int,
    says: str,
) -> None:
    got, body, _ = api_http.request("PUT", "/v1/repos/r/branches/master/files", b"x", params=params)
    assert got == status and says in body["error"]["message"]
    assert volumes.store.count_commits("r") == 1
    assert not volumes.repos.pool.changed_since(
        volumes.repos.branch_path("r", "master"),
        volumes.repos.get_branch("r", "master").clean_generation,
    )


def test_put_is_refused_while_mounted(
    api_http: Transport, volumes: VolumeService, tree: str
) -> None:
    volumes.mount("pfs/r", "busy")
    got, body, _ = api_http.request(
        "PUT", "/v1/repos/r/branches/master/files", b"x", params={"path": "y"}
    )
    assert (got, body["error"]["code"]) == (409, "in_use")
    volumes.unmount("pfs/r", "busy")
