"""Hostile request bodies on every JSON route of the API and every plugin endpoint: deep
nesting, lone surrogates and over-long strings each get a clear 400 and change nothing
(issue 9). Real btrfs and SQLite under the services."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from plugin import create_plugin_app
from plugin.protocol import ENDPOINTS
from tests.api_app import api_app
from tests.protocol.conftest import Transport

SPEC = {
    "name": "wc",
    "input": {"repo": "photos", "glob": "/*"},
    "transform": {"image": "busybox", "cmd": ["sh", "-c", "true"]},
}

API_ROUTES: list[tuple[str, str, dict[str, Any], str]] = [
    # (method, path, a body the route accepts, the string field the hostile part goes in)
    ("POST", "/v1/repos", {"name": "new", "description": "d"}, "description"),
    ("POST", "/v1/repos/photos/branches", {"name": "feature", "from": "master"}, "from"),
    ("POST", "/v1/repos/photos/branches/master/reset", {"ref": "master~1"}, "ref"),
    ("POST", "/v1/repos/photos/branches/master/commit", {"message": "m"}, "message"),
    ("POST", "/v1/repos/photos/gc", {"keep_last": 1, "older_than": "0s"}, "older_than"),
    ("POST", "/v1/repos/photos/branches/master/revert", {"commit": "master"}, "commit"),
    ("POST", "/v1/repos/photos/branches/master/merge", {"from": "dev"}, "from"),
    ("POST", "/v1/pipelines", SPEC, "name"),
    ("PUT", "/v1/pipelines/wc", SPEC, "name"),
]
PLUGIN_BODY = {"Name": "pfs/photos/fresh", "ID": "mount-1", "Opts": {}}


def nested(_body: dict[str, Any], _field: str) -> bytes:
    return b"[" * 100_000 + b"]" * 100_000


def lone_surrogate(body: dict[str, Any], field: str) -> bytes:
    # json.dumps would escape a lone surrogate as \ud800 too; written out to be sure.
    return json.dumps({**body, field: "SURROGATE"}).replace("SURROGATE", "a\\ud800b").encode()


def long_string(body: dict[str, Any], field: str) -> bytes:
    return json.dumps({**body, field: "a" * 10_000_000}).encode()


HOSTILE: dict[str, tuple[Callable[[dict[str, Any], str], bytes], str, int]] = {
    # kind: (the body, what the refusal says, its status)
    "nested": (nested, "nested too deeply; arrays and objects may nest at most 64 deep", 400),
    "lone surrogate": (lone_surrogate, "lone UTF-16 surrogate (\\ud800)", 400),
    "10 MB string": (long_string, "at most 1048576 bytes are accepted", 413),
}


@pytest.fixture
def populated(repos: RepoService, volumes: VolumeService) -> RepoService:
    """photos: two commits on master, one on dev, and changes in master's working copy
    that no commit holds yet (so a commit, reset or merge would change something)."""
    for mount_id, name, file in [("m1", "pfs/photos", "a"), ("m2", "pfs/photos", "b")]:
        path = volumes.mount(name, mount_id)
        (path / file).write_text(file)
        volumes.unmount(name, mount_id)
    repos.create_branch("photos", "dev", parse_ref("master~1"))
    path = volumes.mount("pfs/photos/dev", "m3")
    (path / "c").write_text("c")
    volumes.unmount("pfs/photos/dev", "m3")
    (repos.branch_path("photos", "master") / "uncommitted").write_text("x")
    return repos


def state(repos: RepoService, store: SqliteStore) -> Any:
    """Everything a request could change: records and the pool's folders."""
    return (
        store.list_repos(),
        [(b.name, b.head) for r in store.list_repos() for b in store.list_branches(r.name)],
        [c.id for r in store.list_repos() for c in store.list_commits(r.name)],
        store.list_mounts(),
        store.list_volumes(),
        store.list_documents("pipeline"),
        store.list_documents("job"),
        sorted(str(p.relative_to(repos.repos_dir)) for p in repos.repos_dir.glob("*/*/*")),
    )


def refused(status: int, message: str, says: str, expected: int) -> None:
    assert status == expected, message
    assert says in message, message


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize(("method", "path", "body", "field"), API_ROUTES)
def test_every_json_route_refuses_hostile_bodies(
    populated: RepoService,
    volumes: VolumeService,
    store: SqliteStore,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    kind: str,
) -> None:
    make, says, expected = HOSTILE[kind]
    client = api_app(populated, volumes).test_client()
    before = state(populated, store)
    reply = client.open(path, method=method, data=make(body, field))
    assert reply.json is not None
    refused(reply.status_code, reply.json["error"]["message"], says, expected)
    code = "invalid_request" if expected == 400 else "body_too_large"
    assert reply.json["error"]["code"] == code
    assert state(populated, store) == before


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_plugin_endpoint_refuses_hostile_bodies(
    populated: RepoService, volumes: VolumeService, store: SqliteStore, endpoint: str, kind: str
) -> None:
    make, says, expected = HOSTILE[kind]
    client = create_plugin_app(volumes).test_client()
    before = state(populated, store)
    reply = client.post(endpoint, data=make(PLUGIN_BODY, "Name"))
    refused(reply.status_code, json.loads(reply.data)["Err"], says, expected)
    assert state(populated, store) == before


def test_hostile_bodies_over_the_sockets(
    populated: RepoService,
    store: SqliteStore,
    api_http: Transport,
    plugin_http: Transport,
) -> None:
    before = state(populated, store)
    for make, says, expected in HOSTILE.values():
        status, reply, _ = api_http.request("POST", "/v1/repos", make({"name": "n"}, "name"))
        refused(status, reply["error"]["message"], says, expected)
        status, reply, _ = plugin_http.request("POST", "/VolumeDriver.Create", make({}, "Name"))
        refused(status, reply["Err"], says, expected)
    assert state(populated, store) == before
