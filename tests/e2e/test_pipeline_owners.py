"""A pipeline's output branch belongs to it, seen through a real Docker engine and the
pfs CLI: a writable mount of it is refused with the pipeline named, while its commits
mount read-only and a branch of it takes writes; a repo the pipeline reads is deleted
only with --force, which takes the pipeline and the space it kept along."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.docker_user import DockerUser
from tests.pfs_node import PFS, PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

JOB_WAIT = 120.0
OWNED = (
    "cannot mount branch shout/master: it is the output of pipeline shout, and only its "
    "jobs write there; read it at a commit (pfs/shout@COMMIT), or branch from it"
)


def put(pfs: PfsNode, target: str, path: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PFS, "--api", str(pfs.api_socket), "put", target, path],
        input=data,
        capture_output=True,
        check=False,
    )


def wait_job(pfs: PfsNode, pipeline: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_WAIT
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        jobs = pfs.cli_json("job", "list", "--pipeline", pipeline)
        if jobs and jobs[-1]["state"] in ("success", "failure", "killed"):
            return jobs[-1]
        time.sleep(0.3)
    raise AssertionError(f"{pipeline}: no finished job; jobs: {jobs}\n{pfs.log()[-3000:]}")


def test_an_output_branch_is_read_at_commits_and_its_repo_deleted_only_with_force(
    pfs: PfsNode, user: DockerUser, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "words")
    assert put(pfs, "words/master", "a.txt", b"hello\n").returncode == 0
    spec = tmp_path / "shout.yaml"
    spec.write_text(
        "name: shout\ninput: {repo: words, glob: /*}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, "
        '\'tr a-z A-Z < "$PFS_DATUM_WORDS" > "/pfs/out/$(basename "$PFS_DATUM_WORDS")"\']}\n'
    )
    pfs.cli("pipeline", "create", "-f", str(spec))
    job = wait_job(pfs, "shout")
    assert job["state"] == "success", job
    head = pfs.cli_json("commit", "inspect", "shout@master")["id"]

    # Docker cannot mount the output branch for writing; nothing changes.
    for name in ("shout", "shout@master"):
        done = user.run(name, "echo mine > /data/a.txt", check=False)
        assert done.returncode != 0 and OWNED in done.stderr, done.stderr
    refused = put(pfs, "shout/master", "a.txt", b"mine\n")
    assert refused.returncode == 1 and b"it is the output of pipeline shout" in refused.stderr
    assert [c["id"] for c in pfs.cli_json("log", "shout")] == [head]
    assert pfs.cli_json("mount", "list") == []
    # Its commits mount read-only; a branch of it is the place for one's own writes.
    assert user.run(f"shout@{head}", "cat /data/a.txt").stdout == "HELLO\n"
    pfs.cli("branch", "create", "shout/mine", "--from", "master")
    user.run("shout/mine", "echo mine >> /data/a.txt")
    assert pfs.cli("cat", "shout@mine", "a.txt").stdout == "HELLO\nmine\n"

    kept = pfs.pool_root / "pipelines" / "shout"
    assert any((kept / "datums").iterdir()), "the datum output is kept for reuse"
    done = pfs.cli("repo", "delete", "words", "--yes", check=False)
    assert done.returncode == 1
    assert "cannot delete repo 'words': pipeline shout reads words/master" in done.stderr
    assert "--force" in done.stderr
    assert pfs.cli_json("pipeline", "list")[0]["name"] == "shout"
    done = pfs.cli("repo", "delete", "words", "--yes", "--force")
    assert done.stdout == "deleted repo words\ndeleted pipeline(s) shout with it\n"
    assert pfs.cli_json("pipeline", "list") == []
    assert not kept.exists(), "the pipeline's datum outputs and scratch went with it"
    # The output repo is no one's now: its branch takes writes again.
    assert put(pfs, "shout/master", "b.txt", b"free\n").returncode == 0
