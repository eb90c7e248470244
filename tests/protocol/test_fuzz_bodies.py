"""Fuzz: hypothesis-made hostile bodies (``tests.hostile_input``) to every route of the
pfs API and every plugin endpoint, over the daemon's real transport (waitress on unix
sockets, with its body limits) and real btrfs and SQLite. Every request gets an answer
within ``REQUEST_TIMEOUT``, never a crash (API: no 5xx; plugin: no "internal error"),
a refusal changes nothing in the store or the pool, and both sockets serve afterwards.

The routes come from the apps' own url_maps, so a new route is fuzzed without a word
here. Examples per route: the ``pfs-fuzz`` profile (``PFS_FUZZ_EXAMPLES`` for a long run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import requests
import requests_unixsocket
from hypothesis import given, settings

from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.transport import UnixSocketServer
from pfs_volume.volumes import VolumeService
from plugin import create_plugin_app
from plugin.protocol import ENDPOINTS
from tests.api_app import api_app
from tests.hostile_input import FUZZ_PROFILE, app_routes, hostile_bodies, store_state

REQUEST_TIMEOUT = 15.0
"""Seconds any one request may take: no body may hang the daemon."""
PATH_VALUES = {
    "repo": "photos",
    "branch": "master",
    "ref": "master",
    "name": "wc",
    "mount_id": "m1",
    "job_id": "0" * 32,
    "datum_id": "0" * 64,
}
QUERY = {"path": "a", "ref": "master", "to": "master"}
"""Query parameters some routes need before they read a body."""


def _apps() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    # The url_maps do not depend on the services: build the apps over stand-ins.
    api = api_app(MagicMock(), MagicMock())
    plugin = create_plugin_app(MagicMock())
    return app_routes(api), app_routes(plugin)


API_ROUTES, PLUGIN_ROUTES = _apps()


@pytest.fixture
def served(repos: RepoService, volumes: VolumeService, tmp_path: Path) -> Iterator[dict[str, str]]:
    """photos (two commits on master, one on dev, an uncommitted file on master) and
    both apps on real unix sockets; the base URL of each."""
    for mount_id, name, file in [("m1", "pfs/photos", "a"), ("m2", "pfs/photos", "b")]:
        path = volumes.mount(name, mount_id)
        (path / file).write_text(file)
        volumes.unmount(name, mount_id)
    repos.create_branch("photos", "dev", parse_ref("master~1"))
    (repos.branch_path("photos", "master") / "uncommitted").write_text("x")
    servers = [
        UnixSocketServer(api_app(repos, volumes), tmp_path / "api.sock", "api"),
        UnixSocketServer(create_plugin_app(volumes), tmp_path / "plugin.sock", "plugin"),
    ]
    for server in servers:
        server.start()
    try:
        yield {s.label: "http+unix://" + str(s.path).replace("/", "%2F") for s in servers}
    finally:
        for server in servers:
            server.stop()


def test_the_routes_come_from_the_apps() -> None:
    assert {rule for _, rule in PLUGIN_ROUTES} == set(ENDPOINTS)
    assert ("PUT", "/v1/repos/<repo>/branches/<branch>/files") in API_ROUTES
    assert len(API_ROUTES) >= 30


def _fuzz(
    served: dict[str, str],
    repos: RepoService,
    store: SqliteStore,
    label: str,
    method: str,
    rule: str,
    check: Any,
) -> None:
    session = requests_unixsocket.Session()
    path = rule
    for key, value in PATH_VALUES.items():
        path = path.replace(f"<{key}>", value)
    assert "<" not in path, f"no value for a part of {rule}: add it to PATH_VALUES"
    url = served[label] + path
    baseline = [store_state(repos, store)]

    @given(body=hostile_bodies())
    @settings(settings.get_profile(FUZZ_PROFILE))
    def one(body: bytes) -> None:
        try:
            reply = session.request(method, url, data=body, params=QUERY, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            pytest.fail(f"{method} {rule} did not answer in {REQUEST_TIMEOUT}s: {body[:80]!r}")
        check(reply, body)
        now = store_state(repos, store)
        if reply.status_code >= 400:
            assert now == baseline[0], f"{method} {rule} refused {body[:80]!r} but changed"
        baseline[0] = now  # an accepted request may change things (a commit, a delete)

    try:
        one()
    finally:
        session.close()
    _still_serving(served)


def _still_serving(served: dict[str, str]) -> None:
    with requests_unixsocket.Session() as session:
        health = session.get(served["api"] + "/v1/health", timeout=REQUEST_TIMEOUT)
        assert health.status_code == 200
        activate = session.post(served["plugin"] + "/Plugin.Activate", timeout=REQUEST_TIMEOUT)
        assert activate.json() == {"Implements": ["VolumeDriver"]}


@pytest.mark.parametrize(("method", "rule"), API_ROUTES, ids=[" ".join(r) for r in API_ROUTES])
def test_every_api_route_survives_hostile_bodies(
    served: dict[str, str], repos: RepoService, store: SqliteStore, method: str, rule: str
) -> None:
    def check(reply: requests.Response, body: bytes) -> None:
        shown = f"{method} {rule} with {body[:80]!r}: {reply.status_code} {reply.text[:300]}"
        assert reply.status_code < 500, shown
        if reply.status_code >= 400:
            assert reply.json()["error"]["message"], shown

    _fuzz(served, repos, store, "api", method, rule, check)


@pytest.mark.parametrize(("method", "rule"), PLUGIN_ROUTES, ids=[r[1] for r in PLUGIN_ROUTES])
def test_every_plugin_endpoint_survives_hostile_bodies(
    served: dict[str, str], repos: RepoService, store: SqliteStore, method: str, rule: str
) -> None:
    def check(reply: requests.Response, body: bytes) -> None:
        shown = f"{rule} with {body[:80]!r}: {reply.status_code} {reply.text[:300]}"
        answer = json.loads(reply.content)
        assert isinstance(answer, dict), shown
        if reply.status_code != 200:
            # The driver's own refusals are 500 with an Err, as Docker's helpers answer.
            assert answer["Err"] and not answer["Err"].startswith("internal error"), shown

    _fuzz(served, repos, store, "plugin", method, rule, check)
