"""Output branches belong to their pipeline, and repos in use are protected (through the
API and the plugin protocol, in process and over the socket).

Every write from outside to a pipeline's output branch is refused with the same words,
naming the pipeline, and changes nothing; reading it at a commit and branching from it
stay open. Deleting a repo or branch a pipeline names is refused naming each pipeline,
unless forced. Jobs need Docker (tests/e2e); none runs here: no Docker engine is served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.meta import SqliteStore
from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.conftest import Transport

OWNED = (
    "it is the output of pipeline wc, and only its jobs write there; read it at a commit "
    "(pfs/wc@COMMIT), or branch from it (pfs branch create wc/NEW --from master)"
)


def send(
    http: Transport, method: str, path: str, body: Any = b"", params: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, reply, _ = http.request(method, path, data, params)
    return status, reply


def put(http: Transport, repo_branch: str, path: str, data: bytes) -> tuple[int, Any]:
    repo, branch = repo_branch.split("/")
    return send(http, "PUT", f"/v1/repos/{repo}/branches/{branch}/files", data, {"path": path})


def pfs(api: str, *args: str) -> tuple[int, str, str]:
    result = invoke(["--api", api, *args])
    return result.exit_code, result.stdout, result.stderr


def spec(name: str = "wc", source: str = "text", output: str = "wc") -> dict[str, Any]:
    return {
        "name": name,
        "input": {"repo": source, "glob": "/*"},
        "transform": {"image": "busybox", "cmd": ["true"]},
        "output": {"repo": output},
    }


@pytest.fixture
def owned(api_http: Transport) -> dict[str, str]:
    """Repo text with a commit; repo wc with two commits on master and one on dev made
    before pipeline wc (text -> wc/master) existed. Returns the commits by name."""
    send(api_http, "POST", "/v1/repos", {"name": "text"})
    assert put(api_http, "text/master", "a.txt", b"a")[0] == 200
    send(api_http, "POST", "/v1/repos", {"name": "wc"})
    first = put(api_http, "wc/master", "one", b"1")[1]["commit"]["id"]
    second = put(api_http, "wc/master", "two", b"2")[1]["commit"]["id"]
    send(api_http, "POST", "/v1/repos/wc/branches", {"name": "dev"})
    dev = put(api_http, "wc/dev", "three", b"3")[1]["commit"]["id"]
    status, made = send(api_http, "POST", "/v1/pipelines", spec())
    assert status == 201, made
    return {"first": first, "second": second, "dev": dev}


def state(http: Transport) -> tuple[Any, ...]:
    """What a refused write must leave as it was: branches, the log, master's files."""
    branches = send(http, "GET", "/v1/repos/wc/branches")[1]
    log = send(http, "GET", "/v1/repos/wc/log")[1]
    files = send(http, "GET", "/v1/repos/wc/commits/master/files")[1]
    return (branches, log, files)


def test_every_write_to_an_output_branch_is_refused_naming_the_pipeline(
    api_http: Transport, owned: dict[str, str]
) -> None:
    before = state(api_http)
    refused = {
        "write to": put(api_http, "wc/master", "new", b"x"),
        "remove from": send(
            api_http, "DELETE", "/v1/repos/wc/branches/master/files", params={"path": "one"}
        ),
        "merge into": send(api_http, "POST", "/v1/repos/wc/branches/master/merge", {"from": "dev"}),
        "revert on": send(
            api_http, "POST", "/v1/repos/wc/branches/master/revert", {"commit": owned["second"]}
        ),
        "reset": send(
            api_http, "POST", "/v1/repos/wc/branches/master/reset", {"ref": owned["first"]}
        ),
        "commit to": send(api_http, "POST", "/v1/repos/wc/branches/master/commit", {}),
    }
    for verb, (status, reply) in refused.items():
        assert status == 409, (verb, reply)
        assert reply["error"]["message"] == f"cannot {verb} branch wc/master: {OWNED}", verb
    assert state(api_http) == before, "a refused write changed nothing"


def test_an_output_branch_stays_readable_at_a_commit_and_by_branching_from_it(
    api_http: Transport, owned: dict[str, str], volumes: VolumeService
) -> None:
    status, listed = send(
        api_http, "GET", "/v1/repos/wc/commits/master/files", params={"path": "two"}
    )
    assert status == 200 and [e["name"] for e in listed["entries"]] == ["two"]
    path = volumes.mount(f"pfs/wc@{owned['second']}", "reader")
    assert (path / "one").read_text() == "1"
    volumes.unmount(f"pfs/wc@{owned['second']}", "reader")
    # A branch of one's own, started at the output's head, takes writes as any branch.
    status, made = send(
        api_http, "POST", "/v1/repos/wc/branches", {"name": "mine", "from": "master"}
    )
    assert status == 201 and made["head"] == owned["second"]
    assert put(api_http, "wc/mine", "note", b"mine")[0] == 200
    work = volumes.mount("pfs/wc/mine", "writer")
    (work / "more").write_text("more")
    volumes.unmount("pfs/wc/mine", "writer")
    assert (
        send(api_http, "GET", "/v1/repos/wc/commits/mine/files", params={"path": "more"})[0] == 200
    )


@pytest.mark.parametrize("name", ["pfs/wc", "pfs/wc/master", "pfs/wc@master"])
def test_docker_cannot_mount_an_output_branch_for_writing(
    plugin_http: Transport,
    api_http: Transport,
    owned: dict[str, str],
    store: SqliteStore,
    name: str,
) -> None:
    before = state(api_http)
    for endpoint in ("/VolumeDriver.Create", "/VolumeDriver.Get", "/VolumeDriver.Mount"):
        status, reply, _ = plugin_http.request(
            "POST", endpoint, json.dumps({"Name": name, "ID": "c1"}).encode()
        )
        assert reply == {"Err": f"cannot mount branch wc/master: {OWNED}"}, endpoint
    assert store.list_mounts() == [] and store.get_volume(name) is None
    assert state(api_http) == before
    # The same output at a commit mounts (read-only).
    status, reply, _ = plugin_http.request(
        "POST",
        "/VolumeDriver.Mount",
        json.dumps({"Name": f"pfs/wc@{owned['second']}", "ID": "c2"}).encode(),
    )
    assert status == 200 and reply["Mountpoint"].endswith(f"/commits/{owned['second']}")


def test_deleting_a_branch_or_repo_a_pipeline_names_is_refused_unless_forced(
    api_http: Transport, owned: dict[str, str], store: SqliteStore
) -> None:
    assert send(api_http, "POST", "/v1/pipelines", spec("copy", "wc", "copies"))[0] == 201
    status, reply = send(api_http, "DELETE", "/v1/repos/wc/branches/master")
    assert status == 409
    assert reply["error"]["message"] == (
        "cannot delete branch wc/master: pipeline copy reads wc/master; pipeline wc writes "
        "wc/master; delete those pipelines first (pfs pipeline delete copy wc), or give "
        "--force to delete them too"
    )
    status, reply = send(api_http, "DELETE", "/v1/repos/text")
    assert status == 409
    assert reply["error"]["message"] == (
        "cannot delete repo 'text': pipeline wc reads text/master; delete those pipelines "
        "first (pfs pipeline delete wc), or give --force to delete them too"
    )
    assert store.get_repo("text") is not None and store.get_repo("wc") is not None
    assert sorted(n for n, _b, _v in store.list_documents("pipeline")) == ["copy", "wc"]
    # The branch dev is no pipeline's: it goes as before.
    assert send(api_http, "DELETE", "/v1/repos/wc/branches/dev")[1] == {
        "deleted": "wc/dev",
        "pipelines_deleted": [],
    }
    status, reply = send(api_http, "DELETE", "/v1/repos/wc", params={"force": "yes"})
    assert status == 400 and "force must be true or false, not 'yes'" in reply["error"]["message"]
    assert store.get_repo("wc") is not None
    status, reply = send(api_http, "DELETE", "/v1/repos/wc", params={"force": "true"})
    assert (status, reply) == (200, {"deleted": "wc", "pipelines_deleted": ["copy", "wc"]})
    assert store.get_repo("wc") is None and store.list_documents("pipeline") == []
    # With its pipelines gone, the input repo deletes without force.
    assert send(api_http, "DELETE", "/v1/repos/text")[1] == {
        "deleted": "text",
        "pipelines_deleted": [],
    }


def test_a_pipeline_is_not_made_on_an_output_branch_mounted_or_holding_changes(
    api_http: Transport, volumes: VolumeService, store: SqliteStore
) -> None:
    send(api_http, "POST", "/v1/repos", {"name": "text"})
    work = volumes.mount("pfs/wc/master", "writer")
    (work / "half").write_text("written by a container still running")
    status, reply = send(api_http, "POST", "/v1/pipelines", spec())
    assert status == 409
    assert reply["error"]["message"] == (
        "cannot make pipeline wc's output of branch wc/master: 1 container(s) have it "
        "mounted; stop them first"
    )
    assert store.list_documents("pipeline") == []
    # Unmounted but not committed (a mount released while its container still wrote).
    volumes.store.delete_mount("writer")
    status, reply = send(api_http, "POST", "/v1/pipelines", spec())
    assert status == 409
    assert reply["error"]["message"] == (
        "cannot make pipeline wc's output of branch wc/master: its working copy holds "
        "changes no commit holds; commit them first: pfs commit wc/master"
    )
    assert store.list_documents("pipeline") == []
    assert (work / "half").read_text() == "written by a container still running"
    assert send(api_http, "POST", "/v1/repos/wc/branches/master/commit", {})[0] == 200
    assert send(api_http, "POST", "/v1/pipelines", spec())[0] == 201


def test_cli_repo_delete_names_the_pipelines_and_force_says_which_went(
    api_socket: str, tmp_path: Path
) -> None:
    spec_file = tmp_path / "wc.json"
    spec_file.write_text(json.dumps(spec("wc", "photos", "wc")))
    assert pfs(api_socket, "pipeline", "create", "-f", str(spec_file))[0] == 0
    code, _, err = pfs(api_socket, "repo", "delete", "photos", "--yes")
    assert code == 1
    assert err.strip() == (
        "pfs: error: cannot delete repo 'photos': pipeline wc reads photos/master; delete "
        "those pipelines first (pfs pipeline delete wc), or give --force to delete them too"
    )
    code, _, err = pfs(api_socket, "branch", "delete", "wc/master")
    assert code == 1 and "pipeline wc writes wc/master" in err
    assert pfs(api_socket, "repo", "list", "--json")[1].count('"photos"') == 1
    code, out, _ = pfs(api_socket, "repo", "delete", "photos", "--yes", "--force")
    assert code == 0 and out == "deleted repo photos\ndeleted pipeline(s) wc with it\n"
    assert json.loads(pfs(api_socket, "pipeline", "list", "--json")[1]) == []
