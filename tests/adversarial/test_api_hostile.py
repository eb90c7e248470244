"""Attack: hostile bodies and refs through the real API app."""

from __future__ import annotations

import json

import pytest

from pfs_volume.repos import RepoService
from tests.protocol.conftest import Transport

BODIES = [
    b"[" * 100000 + b"]" * 100000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"from": "\\ud800"}',
    b'{"from": "dev", "from": "master"}',
    b'{"keep_last": 1e999}',
    b'{"keep_last": -1e999}',
    b'{"keep_last": NaN}',
    b'{"keep_last": 99999999999999999999999999999}',
    b'{"commit": "master' + b"~1" * 50000 + b'"}',
    b'{"commit": "master^0^0^0^0^0^0^0^2"}',
    b'{"commit": "master~999999999"}',
    b'{"message": "' + b"x" * (8 << 20) + b'"}',
    b'{"name": "r2", "description": "\\u0000"}',
    b"\xff\xfe{}",
    b'{"from": "dev", "strategy": null}',
    b'{"from": ["dev"]}',
    b"null",
    b"1",
    b'"x"',
]

ROUTES = [
    ("POST", "/v1/repos"),
    ("POST", "/v1/repos/r/branches"),
    ("POST", "/v1/repos/r/branches/master/reset"),
    ("POST", "/v1/repos/r/branches/master/commit"),
    ("POST", "/v1/repos/r/gc"),
    ("POST", "/v1/repos/r/branches/master/revert"),
    ("POST", "/v1/repos/r/branches/master/merge"),
]


@pytest.mark.parametrize("route", ROUTES, ids=[r[1] for r in ROUTES])
def test_hostile_bodies_get_4xx(api_http: Transport, repos: RepoService, route) -> None:
    repos.create_repo("r")
    w = repos.working_copy("r", "master")
    (w / "f").write_text("x")
    repos.commit_working_copy("r", "master", "c", "test")
    head = repos.get_branch("r", "master").head
    bad = []
    for body in BODIES:
        status, answer, _ = api_http.request(route[0], route[1], body)
        if not 400 <= status < 500:
            bad.append((body[:60], status, str(answer)[:200]))
    assert repos.get_branch("r", "master").head == head
    assert not bad, bad


def test_log_first_parent_and_limit(api_http: Transport, repos: RepoService) -> None:
    from pfs_volume.history import HistoryService
    from pfs_volume.names import Ref

    repos.create_repo("r")

    def c(branch: str, name: str) -> str:
        (repos.working_copy("r", branch) / name).write_text(name)
        repos.commit_working_copy("r", branch, name, "test")
        return repos.get_branch("r", branch).head

    a = c("master", "a")
    repos.create_branch("r", "dev", Ref("master"))
    d1 = c("dev", "d1")
    m1 = c("master", "m1")
    d2 = c("dev", "d2")
    merged = HistoryService(repos).merge("r", "dev", "master").head
    s, body, _ = api_http.request("GET", "/v1/repos/r/log", params={"first_parent": "true"})
    assert s == 200
    assert [x["id"] for x in body["commits"]] == [merged, m1, a]
    s, body, _ = api_http.request("GET", "/v1/repos/r/log")
    assert [x["id"] for x in body["commits"]] == [merged, d2, m1, d1, a]
    s, body, _ = api_http.request(
        "GET", "/v1/repos/r/log", params={"ref": "master^2~1", "limit": "1"}
    )
    assert [x["id"] for x in body["commits"]] == [d1]
    s, body, _ = api_http.request("GET", "/v1/repos/r/log", params={"ref": "master^0~0^1"})
    assert s == 200 and body["commits"][0]["id"] == m1
    s, body, _ = api_http.request("GET", "/v1/repos/r/log", params={"ref": "master~1^2"})
    assert s == 404, (s, body)
    s, body, _ = api_http.request("GET", "/v1/repos/r/log", params={"ref": "master^3"})
    assert 400 <= s < 500, (s, body)


@pytest.mark.parametrize("text", ["\x00", "\x1b[2J", "\u2028", "a" * 100000])
def test_export_import_round_trip_odd_texts(
    api_http: Transport, repos: RepoService, text: str
) -> None:
    """What the API accepted as a description and a commit message must export and
    import back (or have been refused up front)."""
    import io

    from pfs_volume.transfer import export_repo, import_repo

    s, _body, _ = api_http.request(
        "POST", "/v1/repos", json.dumps({"name": "r", "description": text}).encode()
    )
    if s >= 400:
        return
    (repos.working_copy("r", "master") / "f").write_text("x")
    s, _body, _ = api_http.request(
        "POST", "/v1/repos/r/branches/master/commit", json.dumps({"message": text}).encode()
    )
    data = b"".join(export_repo(repos, "r"))
    imported = import_repo(repos, io.BytesIO(data), "r2")
    assert imported.description == text
