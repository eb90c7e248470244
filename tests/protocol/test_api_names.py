"""Names a container made that are not UTF-8, or hold a newline, through ls, cat, get and
diff, in JSON (percent escape), in URLs (percent-encoded bytes) and in the CLI's text
(escaped), byte-exact, on a real btrfs pool."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.repos import RepoService
from pfs_volume.transport import UnixSocketServer
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app
from tests.cli_run import invoke
from tests.protocol.conftest import Transport
from tests.protocol.test_api_files_safety import body_of

LATIN = b"caf\xe9"
NEWLINE = b"a\nb"
LINK = b"link\xff"


def make(volumes: VolumeService, api: Transport | None = None) -> tuple[str, str]:
    """Commit ``plain``, then LATIN, NEWLINE and a link to LATIN made on disk in the
    branch's working copy and committed through the API's commit route; both heads."""
    path = volumes.mount("pfs/r", "m1")
    (path / "plain").write_text("plain")
    volumes.unmount("pfs/r", "m1")
    first = volumes.repos.get_branch("r", "master").head
    root = bytes(volumes.repos.working_copy("r", "master"))
    Path(os.fsdecode(root + b"/" + LATIN)).write_bytes(b"latin bytes")
    Path(os.fsdecode(root + b"/" + NEWLINE)).write_bytes(b"newline")
    os.symlink(LATIN, root + b"/" + LINK)
    if api is not None:
        status, body, _ = api.request(
            "POST", "/v1/repos/r/branches/master/commit", b'{"message": "names"}'
        )
        assert status == 200, body
    else:
        volumes.repos.commit_working_copy("r", "master", "names", "api")
    second = volumes.repos.get_branch("r", "master").head
    assert first is not None and second is not None and first != second
    return first, second


def test_names_that_are_not_utf8_are_listed_read_and_diffed_losslessly(
    api_http: Transport, volumes: VolumeService
) -> None:
    first, second = make(volumes, api_http)
    status, body, _ = api_http.request("GET", "/v1/repos/r/commits/master/files")
    assert status == 200
    got = {
        (e["name"], e["name_encoding"], e["kind"], e["target"], e["target_encoding"])
        for e in body["entries"]
    }
    assert got == {
        ("a\nb", "utf-8", "file", None, None),
        ("caf%E9", "percent", "file", None, None),
        ("link%FF", "percent", "symlink", "caf%E9", "percent"),
        ("plain", "utf-8", "file", None, None),
    }
    content = "/v1/repos/r/commits/master/content"
    assert body_of(api_http, f"{content}?path=caf%E9") == (200, b"latin bytes")
    assert body_of(api_http, f"{content}?path=/a%0Ab") == (200, b"newline")
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": second})
    assert status == 200 and body["from"] == first
    assert [(c["path"], c["path_encoding"], c["kind"]) for c in body["changes"]] == [
        ("a\nb", "utf-8", "added"),
        ("caf%E9", "percent", "added"),
        ("link%FF", "percent", "added"),
    ]


def test_a_rename_with_a_new_content_is_diffed_with_both_names(
    api_http: Transport, volumes: VolumeService
) -> None:
    make(volumes, api_http)
    root = bytes(volumes.repos.working_copy("r", "master"))
    os.rename(root + b"/" + LATIN, root + b"/" + LATIN + b"-2")
    with open(root + b"/" + LATIN + b"-2", "ab") as handle:
        handle.write(b" and more")
    volumes.repos.commit_working_copy("r", "master", "rename", "api")
    status, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": "master"})
    assert status == 200
    assert body["changes"] == [
        {
            "path": "caf%E9-2",
            "path_encoding": "percent",
            "kind": "renamed",
            "old_path": "caf%E9",
            "old_path_encoding": "percent",
            "modified": True,
        }
    ]


@pytest.fixture
def served(repos: RepoService, volumes: VolumeService, tmp_path: Path) -> Iterator[str]:
    """The API on a real unix socket; its path."""
    server = UnixSocketServer(api_app(repos, volumes), tmp_path / "api.sock", "api")
    server.start()
    try:
        yield str(server.path)
    finally:
        server.stop()


def pfs(api: str, *args: str, data: bytes | None = None) -> tuple[int, bytes, str]:
    result = invoke(["--api", api, *args], input=data)
    return result.exit_code, result.stdout_bytes, result.stderr


def test_the_cli_prints_names_escaped_and_reads_and_gets_them_byte_exact(
    served: str, volumes: VolumeService, tmp_path: Path
) -> None:
    make(volumes)
    code, out, _ = pfs(served, "ls", "r@master")
    lines = out.decode().splitlines()
    assert code == 0 and len(lines) == 5, lines
    assert [line.split()[0] for line in lines[1:]] == ["a\\nb", "caf\\xe9", "link\\xff", "plain"]
    assert "link\\xff -> caf\\xe9" in out.decode()
    code, out, _ = pfs(served, "cat", "r@master", os.fsdecode(LATIN))
    assert (code, out) == (0, b"latin bytes")
    code, out, _ = pfs(served, "cat", "r@master", os.fsdecode(NEWLINE))
    assert (code, out) == (0, b"newline")
    code, out, _ = pfs(served, "ls", "r@master", os.fsdecode(LINK), "--json")
    assert json.loads(out)[0]["target"] == "caf%E9"
    code, out, err = pfs(served, "get", "r@master", "-o", str(tmp_path / "out"))
    assert code == 0, err
    got = tmp_path.joinpath("out", "r")
    assert sorted(os.listdir(bytes(got))) == [NEWLINE, LATIN, LINK, b"plain"]
    assert Path(os.fsdecode(bytes(got) + b"/" + LATIN)).read_bytes() == b"latin bytes"
    assert os.readlink(bytes(got) + b"/" + LINK) == LATIN
    assert f"to {got}" in err
    code, out, _ = pfs(served, "diff", "r@master")
    assert out.decode().splitlines() == ["A  a\\nb", "A  caf\\xe9", "A  link\\xff"]
    code, out, _ = pfs(served, "put", "r/master", os.fsdecode(LATIN), data=b"latin bytes")
    assert code == 0 and out.decode().startswith("unchanged: r/master holds exactly that")
    code, out, _ = pfs(served, "put", "r/master", os.fsdecode(LATIN), "--json", data=b"x")
    assert code == 0 and json.loads(out)["changed"] is True
    code, out, _ = pfs(served, "put", "r/master", os.fsdecode(LATIN), "--json", data=b"x")
    assert code == 0 and json.loads(out)["changed"] is False
    code, out, _ = pfs(served, "rm", "r/master", os.fsdecode(NEWLINE))
    assert code == 0 and out.decode().startswith("committed ")
    odd = "a+b %20c&d=e#f?g"
    code, out, _ = pfs(served, "put", "r/master", odd, data=b"odd")
    assert code == 0 and pfs(served, "cat", "r@master", odd)[1] == b"odd"
    assert odd in [e["name"] for e in json.loads(pfs(served, "ls", "r@master", "--json")[1])]
