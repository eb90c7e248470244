"""Attack: a container writes a very deep folder chain (allowed by btrfs beyond
PATH_MAX through relative operations); merge must work or refuse cleanly.

The chain is 300 folders deep and the merge runs with Python's recursion limit cut to
200, so any recursion per folder level fails here as a 1,200-deep chain would with the
default limit (``btrfs send`` itself takes seconds per thousand levels, so the test
does not build one)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pfs_volume.repos import RepoService
from tests.adversarial.test_merge_exactness import commit, ours_touch, setup

DEPTH = 300
RECURSION_LIMIT = 200


def deep(w: Path) -> None:
    fd = os.open(w, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("deep")
    os.close(fd)


def test_merge_of_deep_chain(repos: RepoService) -> None:
    history = setup(repos, lambda w: (w / "f").write_text("x"))
    ours = commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", deep)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        result = history.merge("r", "dev", "master")
    except RecursionError:
        assert repos.get_branch("r", "master").head == ours
        pytest.fail("merge died with RecursionError on a deep folder chain")
    finally:
        sys.setrecursionlimit(limit)
    assert result.outcome == "merged"
    merged = repos.commit_path("r", result.head)
    assert (merged / ("d/" * DEPTH) / "bottom").read_text() == "deep"


def test_api_on_deep_chain(api_http, repos: RepoService) -> None:
    """Through the API: merge, diff, log and tar of a commit holding a deep chain give
    a clean answer (2xx or 4xx with an error body), never a 500."""
    import json

    setup(repos, lambda w: (w / "f").write_text("x"))
    commit(repos, "r", "master", ours_touch)
    commit(repos, "r", "dev", deep)
    answers = {}
    s, body, _ = api_http.request(
        "POST", "/v1/repos/r/branches/master/merge", json.dumps({"from": "dev"}).encode()
    )
    answers["merge"] = (s, str(body)[:200])
    s, body, _ = api_http.request("GET", "/v1/repos/r/diff", params={"to": "dev", "from": "master"})
    answers["diff"] = (s, str(body)[:200])
    s, body, _ = api_http.request("GET", "/v1/repos/r/commits/dev/files", params={"path": "d"})
    answers["ls"] = (s, str(body)[:200])
    bad = {k: v for k, v in answers.items() if v[0] >= 500}
    assert not bad, bad
