"""What ``pfs log`` and ``pfs commit inspect`` show for commits made through Docker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.docker_user import DockerUser

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

COMMIT_ID = re.compile(r"[0-9a-f]{32}")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
COMMIT_FIELDS = [
    "id",
    "parent",
    "parents",
    "repo",
    "branch",
    "created",
    "message",
    "origin",
    "pruned",
    "holders",
    "dead_holders",
    "copies",
    "provenance",
    "job",
]


def test_log_and_commit_inspect_describe_auto_commits(user: DockerUser) -> None:
    began = datetime.now(UTC)
    user.run("photos@master", "echo 1 > /data/a")
    container = user.start("photos@master")
    [mount_id] = user.inspect_volume("photos@master")["Status"]["mount_ids"]
    user.exec(container, "echo 2 > /data/b")
    assert user.release(container) == 0

    commits = user.wait_for_commits("photos", 2)

    assert len(commits) == 2
    newest, oldest = commits
    for commit in commits:
        assert sorted(commit) == sorted(COMMIT_FIELDS)
        assert COMMIT_ID.fullmatch(commit["id"])
        assert commit["repo"] == "photos"
        assert commit["branch"] == "master"
        assert commit["origin"] == "unmount"
        assert RFC3339_UTC.fullmatch(commit["created"]), commit["created"]
        created = datetime.fromisoformat(commit["created"])
        assert began - timedelta(seconds=5) <= created <= datetime.now(UTC)
        assert user.volume("photos@master") in commit["message"]
    assert oldest["parent"] is None
    assert newest["parent"] == oldest["id"]
    created = datetime.fromisoformat(newest["created"])
    assert created >= datetime.fromisoformat(oldest["created"])
    assert f"(mount {mount_id})" in newest["message"]
    assert user.node.cli_json("log", "photos", "--limit", "1") == [newest]
    assert user.node.cli_json("log", f"photos@{oldest['id'][:8]}") == [oldest]

    def inspect(*args: str) -> dict[str, object]:
        shown = dict(user.node.cli_json(*args))
        assert isinstance(shown.pop("size"), int) and isinstance(shown.pop("files_changed"), int)
        return shown

    assert inspect("commit", "inspect", "photos@master") == newest
    assert inspect("commit", "inspect", "photos@master~1") == oldest
    assert inspect("commit", "inspect", f"photos@{oldest['id']}") == oldest
    assert inspect("commit", "inspect", f"photos@{newest['id'][:8]}~1") == oldest
    too_far = user.node.cli("commit", "inspect", "photos@master~2", check=False)
    assert too_far.returncode == 1
    assert too_far.stderr.startswith("pfs: error: ")
    assert "has no parent" in too_far.stderr

    table = user.node.cli("log", "photos").stdout
    assert newest["id"][:12] in table
    assert oldest["id"][:12] in table
    text = user.node.cli("commit", "inspect", "photos@master~1").stdout
    assert f"Id:       {oldest['id']}" in text
    assert "Origin:   unmount" in text
