"""File verbs against hostile trees on a real btrfs pool, through the API (in process
and over the socket): links are never followed, special files never opened, bad paths
refused with a clear error that changes nothing, put's temporary file never seen."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pfs_volume.files import FileService
from pfs_volume.volumes import VolumeService
from tests.protocol.conftest import Transport

PUT = "/v1/repos/r/branches/master/files"
CONTENT = "/v1/repos/r/commits/master/content"
FILES = "/v1/repos/r/commits/master/files"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the pool that links in commits point at; must stay empty."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def hostile(volumes: VolumeService, outside: Path) -> str:
    """A commit holding links out and in, a FIFO, a device node, a file named like the
    old put's partial file; its id."""
    path = volumes.mount("pfs/r", "m1")
    (path / "docs").mkdir()
    (path / "docs" / "a.txt").write_text("alpha")
    (path / "plain").write_text("plain")
    (path / "out").symlink_to(outside)
    (path / "inside").symlink_to("docs")
    os.mkfifo(path / "pipe")
    os.mknod(path / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    (path / ".new.txt.pfs-partial").write_text("the user's own file")
    volumes.unmount("pfs/r", "m1")
    head = volumes.repos.get_branch("r", "master").head
    assert head is not None
    return head


def body_of(api_http: Transport, path_and_query: str) -> tuple[int, bytes]:
    """GET with the query given as it is (already percent-encoded); raw body."""
    if api_http.session is None:
        response = api_http.app.test_client().get(path_and_query)
        return response.status_code, response.get_data()
    url = "http+unix://" + str(api_http.socket).replace("/", "%2F") + path_and_query
    reply = api_http.session.get(url, timeout=60)
    return reply.status_code, reply.content


def assert_unchanged(volumes: VolumeService, head: str, commits: int = 1) -> None:
    """The branch head did not move and the working copy holds nothing new."""
    branch = volumes.repos.get_branch("r", "master")
    assert branch.head == head
    assert volumes.store.count_commits("r") == commits
    path = volumes.repos.branch_path("r", "master")
    assert not volumes.repos.pool.changed_since(path, branch.clean_generation)


def names_in_working_copy(volumes: VolumeService) -> list[str]:
    return sorted(os.listdir(volumes.repos.branch_path("r", "master")))


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("plain/x", "/plain is a file, not a folder"),
        ("plain/deeper/x", "/plain is a file, not a folder"),
        ("pipe/x", "/pipe is a fifo, not a folder"),
        ("null/x", "/null is a character device, not a folder"),
        ("out/x", "/out is a symlink, not a folder"),
        ("inside/x", "/inside is a symlink, not a folder"),
    ],
)
def test_put_through_a_non_folder_is_a_conflict_that_changes_nothing(
    api_http: Transport,
    volumes: VolumeService,
    hostile: str,
    outside: Path,
    path: str,
    says: str,
) -> None:
    before = names_in_working_copy(volumes)
    status, body, _ = api_http.request("PUT", PUT, b"x", params={"path": path})
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert says in body["error"]["message"]
    assert_unchanged(volumes, hostile)
    assert names_in_working_copy(volumes) == before
    assert list(outside.iterdir()) == []
    assert not (volumes.repos.branch_path("r", "master") / "docs" / "x").exists()


LONG = "n" * 256
WIDE = "é" * 128  # 128 characters, 256 bytes


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (LONG, "is 256 bytes long; a file or folder name is at most 255 bytes"),
        (f"docs/{WIDE}", "is 256 bytes long; a file or folder name is at most 255 bytes"),
        ("a/" * 2049, "is 4098 bytes long; a path is at most 4096 bytes"),
        ("docs/\0x", "holds a NUL byte"),
    ],
)
def test_over_long_names_and_paths_are_a_400_for_every_verb(
    api_http: Transport, volumes: VolumeService, hostile: str, path: str, says: str
) -> None:
    for method, route in [
        ("PUT", PUT),
        ("DELETE", PUT),
        ("GET", CONTENT),
        ("GET", FILES),
        ("GET", "/v1/repos/r/commits/master/tar"),
    ]:
        status, body, _ = api_http.request(method, route, b"x", params={"path": path})
        assert (status, body["error"]["code"]) == (400, "invalid_request"), (method, route)
        assert says in body["error"]["message"]
    assert_unchanged(volumes, hostile)


def test_a_250_byte_name_is_put_and_read_back(
    api_http: Transport, volumes: VolumeService, hostile: str
) -> None:
    name = "é" * 125  # 250 bytes
    status, body, _ = api_http.request("PUT", PUT, b"long name", params={"path": f"docs/{name}"})
    assert status == 200 and body["changed"] is True
    assert body_of(api_http, f"{CONTENT}?path=docs/{'%C3%A9' * 125}") == (200, b"long name")
    status, body, _ = api_http.request("GET", FILES, params={"path": "docs"})
    assert name in [e["name"] for e in body["entries"]]


def test_put_never_touches_a_file_named_like_its_temporary_and_leaves_none(
    api_http: Transport, volumes: VolumeService, hostile: str
) -> None:
    status, body, _ = api_http.request("PUT", PUT, b"new", params={"path": "new.txt"})
    assert status == 200 and body["changed"] is True
    status, body, _ = api_http.request("PUT", PUT, b"newer", params={"path": "new.txt"})
    assert status == 200 and body["changed"] is True
    assert body_of(api_http, f"{CONTENT}?path=.new.txt.pfs-partial") == (
        200,
        b"the user's own file",
    )
    status, body, _ = api_http.request("GET", FILES)
    names = [e["name"] for e in body["entries"]]
    assert "new.txt" in names and not [n for n in names if n.startswith(".pfs-put-")]
    assert body_of(api_http, f"{CONTENT}?path=new.txt") == (200, b"newer")


class Broken:
    """An upload that breaks off after ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the client went away")
        data = os.urandom(min(size, self.left))
        self.left -= len(data)
        return data


@pytest.mark.parametrize("target", ["docs/a.txt", "fresh/new/file.bin"])
def test_an_upload_that_breaks_off_leaves_nothing(
    volumes: VolumeService, hostile: str, target: str
) -> None:
    before = names_in_working_copy(volumes)
    with pytest.raises(OSError, match="went away"):
        FileService(volumes.repos).put("r", "master", target, Broken(3 * 1024 * 1024))  # type: ignore[arg-type]
    assert names_in_working_copy(volumes) == before
    assert (volumes.repos.branch_path("r", "master") / "docs" / "a.txt").read_text() == "alpha"
    assert_unchanged(volumes, hostile)


def test_putting_the_same_bytes_makes_no_commit(
    api_http: Transport, volumes: VolumeService, hostile: str
) -> None:
    status, body, _ = api_http.request("PUT", PUT, b"alpha", params={"path": "docs/a.txt"})
    assert status == 200
    assert body["changed"] is False and body["commit"]["id"] == hostile
    assert_unchanged(volumes, hostile)
    # Other bytes still commit: longer, shorter, and a change after an equal prefix.
    big = os.urandom(3 * 1024 * 1024 + 5)
    commits = 1
    for data in [b"alphabet", b"alp", big, big[:-1] + b"!", big + b"more"]:
        status, body, _ = api_http.request("PUT", PUT, data, params={"path": "docs/a.txt"})
        commits += 1
        assert (status, body["changed"]) == (200, True)
        assert body_of(api_http, f"{CONTENT}?path=docs/a.txt") == (200, data)
    head = volumes.repos.get_branch("r", "master").head
    assert head is not None
    status, body, _ = api_http.request("PUT", PUT, big + b"more", params={"path": "docs/a.txt"})
    assert (body["changed"], body["commit"]["id"]) == (False, head)
    assert_unchanged(volumes, head, commits)


def test_put_keeps_a_replaced_files_mode_and_replaces_links_not_their_targets(
    api_http: Transport, volumes: VolumeService, hostile: str, outside: Path
) -> None:
    path = volumes.mount("pfs/r", "m2")
    (path / "run.sh").write_text("echo 1")
    (path / "run.sh").chmod(0o750)
    (path / "to-outside").symlink_to(outside / "victim")
    volumes.unmount("pfs/r", "m2")
    api_http.request("PUT", PUT, b"echo 2", params={"path": "run.sh"})
    api_http.request("PUT", PUT, b"data", params={"path": "to-outside"})
    _, body, _ = api_http.request("GET", FILES)
    entries = {e["name"]: e for e in body["entries"]}
    assert entries["run.sh"]["mode"] == "750"
    assert entries["to-outside"]["kind"] == "file" and list(outside.iterdir()) == []


def test_ls_shows_links_as_links_and_never_goes_through_one(
    api_http: Transport, hostile: str, outside: Path
) -> None:
    status, body, _ = api_http.request("GET", FILES, params={"path": "out"})
    assert status == 200
    [entry] = body["entries"]
    assert (entry["name"], entry["kind"], entry["target"]) == ("out", "symlink", str(outside))
    status, body, _ = api_http.request("GET", FILES)
    kinds = {e["name"]: (e["kind"], e["target"]) for e in body["entries"]}
    assert kinds["inside"] == ("symlink", "docs") and kinds["pipe"] == ("other", None)
    for path, link in [("out/x", "out"), ("inside/a.txt", "inside"), ("inside/d/x", "inside")]:
        status, body, _ = api_http.request("GET", FILES, params={"path": path})
        assert status == 400, path
        assert f"/{link} is a symlink" in body["error"]["message"]
        assert "paths never go through links" in body["error"]["message"]
    status, body, _ = api_http.request("GET", FILES, params={"path": "plain/x"})
    assert status == 404 and "/plain is a file, not a folder" in body["error"]["message"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("path", "kind"),
    [("pipe", "fifo"), ("null", "character device"), ("out", "symlink"), ("inside", "symlink")],
)
def test_cat_reads_regular_files_only(
    api_http: Transport, hostile: str, path: str, kind: str
) -> None:
    status, body, _ = api_http.request("GET", CONTENT, params={"path": path})
    assert status == 400
    assert f"/{path} is a {kind}, not a regular file" in body["error"]["message"]


def test_rm_removes_a_link_not_its_target_and_never_goes_through_one(
    api_http: Transport, volumes: VolumeService, hostile: str, outside: Path
) -> None:
    (outside / "keep").write_text("host file")
    status, body, _ = api_http.request("DELETE", PUT, params={"path": "out/keep"})
    assert status == 400 and "/out is a symlink" in body["error"]["message"]
    status, body, _ = api_http.request(
        "DELETE", PUT, params={"path": "inside", "recursive": "true"}
    )
    assert status == 200
    assert (outside / "keep").read_text() == "host file"
    assert body_of(api_http, f"{CONTENT}?path=docs/a.txt") == (200, b"alpha")
    status, body, _ = api_http.request("DELETE", PUT, params={"path": "pipe"})
    assert status == 200
    status, body, _ = api_http.request("GET", FILES)
    names = [e["name"] for e in body["entries"]]
    assert "inside" not in names and "pipe" not in names and "docs" in names


@pytest.mark.timeout(30)
def test_tar_keeps_links_fifos_and_devices_as_what_they_are(
    api_http: Transport, hostile: str, outside: Path
) -> None:
    status, data = body_of(api_http, "/v1/repos/r/commits/master/tar")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["r/out"].issym() and members["r/out"].linkname == str(outside)
    assert members["r/inside"].issym() and members["r/inside"].linkname == "docs"
    assert members["r/pipe"].isfifo()
    null = members["r/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert members["r/docs/a.txt"].isfile() and members["r/docs/a.txt"].size == 5
    status, data = body_of(api_http, "/v1/repos/r/commits/master/tar?path=inside/a.txt")
    assert status == 400 and b"/inside is a symlink" in data
