"""Datums one by one: retries, datum and job timeouts, output while they run (and
followed), and ``pfs datum list|inspect``."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.test_pipelines import pfs_cli, put, wait_jobs
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]


def create(pfs: PfsNode, tmp_path: Path, name: str, image: str, script: str, **extra: Any) -> None:
    spec = tmp_path / f"{name}.json"
    body = {
        "name": name,
        "input": {"repo": "src", "glob": "/*"},
        "transform": {"image": image, "cmd": ["sh", "-c", script]},
        **extra,
    }
    spec.write_text(json.dumps(body))
    pfs.cli("pipeline", "create", "-f", str(spec))


def running_job(pfs: PfsNode, pipeline: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = pfs.cli_json("job", "list", "--pipeline", pipeline)
        if jobs and jobs[-1]["state"] == "running":
            return jobs[-1]  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"no running job of {pipeline}")


def test_a_datum_is_retried_on_a_fresh_output_and_its_tries_are_shown(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "a", b"1\n")
    # Fails on its first two tries, each leaving a file a later try must not see.
    create(
        pfs,
        tmp_path,
        "flaky",
        image,
        'test -z "$(ls /pfs/out)" || exit 9; echo "$PFS_DATUM_TRY" > /pfs/out/try; '
        'echo "try $PFS_DATUM_TRY"; test "$PFS_DATUM_TRY" -ge 3 || exit 7',
        datum_tries=3,
    )
    [job] = wait_jobs(pfs, "flaky", 1)
    assert job["state"] == "success", job
    [datum] = job["datums"]
    assert datum["tries"] == 3 and datum["error"] is None and datum["started"], datum
    assert pfs.cli("cat", "flaky@master", "try").stdout.strip() == "3"
    logs = pfs.cli("job", "logs", job["id"]).stdout
    assert "try 1" in logs and "pfs: try 3 of 3" in logs and "try 3" in logs, logs
    # Out of tries: the job fails, saying why the last try failed.
    create(pfs, tmp_path, "never", image, "exit 7", datum_tries=2)
    [job] = wait_jobs(pfs, "never", 1)
    assert job["state"] == "failure" and "exit 7" in job["error"], job
    [datum] = job["datums"]
    assert datum["tries"] == 2 and datum["error"] == "exit 7", datum
    assert pfs.cli_json("log", "never") == []


def test_a_datum_over_its_timeout_is_killed_and_fails(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "a", b"1\n")
    started = time.monotonic()
    create(pfs, tmp_path, "sleepy", image, "sleep 60", datum_timeout="1s")
    [job] = wait_jobs(pfs, "sleepy", 1)
    assert time.monotonic() - started < 30
    assert job["state"] == "failure" and "timed out after 1 s" in job["error"], job
    assert job["datums"][0]["error"] == "timed out after 1 s"
    assert docker_engine.docker("ps", "-aq", "--filter", "label=pfs.pipeline=sleepy").stdout == ""


def test_a_job_over_its_timeout_removes_its_containers_and_commits_nothing(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "a", b"1\n")
    put(pfs, "src/master", "b", b"2\n")
    started = time.monotonic()
    create(
        pfs,
        tmp_path,
        "slowjob",
        image,
        "echo x > /pfs/out/$PFS_DATUM_ID; sleep 60",
        job_timeout="2s",
        parallelism=2,
    )
    [job] = wait_jobs(pfs, "slowjob", 1)
    assert time.monotonic() - started < 30
    assert job["state"] == "failure" and job["error"].startswith("job timed out after 2 s"), job
    assert pfs.cli_json("log", "slowjob") == []
    assert docker_engine.docker("ps", "-aq", "--filter", f"label=pfs.job={job['id']}").stdout == ""
    assert not (pfs.pool_root / "pipelines" / "slowjob" / "scratch" / job["id"]).exists()


def test_output_shows_while_a_datum_runs_and_can_be_followed_to_the_end(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "a", b"1\n")
    create(pfs, tmp_path, "talky", image, "echo started; sleep 5; echo finished")
    job = running_job(pfs, "talky")
    follower = subprocess.Popen(
        [*pfs_cli(pfs), "job", "logs", job["id"], "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline and "started" not in seen:
        seen = pfs.cli("job", "logs", job["id"]).stdout
        time.sleep(0.2)
    assert "started" in seen and "finished" not in seen, seen
    assert follower.stdout is not None
    first = follower.stdout.readline()  # comes as it is written, not when the job ends
    assert first.endswith(" | started\n"), first
    assert pfs.cli_json("job", "inspect", job["id"])["state"] == "running"
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    [done] = wait_jobs(pfs, "talky", 1)
    assert done["state"] == "success", done
    short = done["datums"][0]["id"][:12]
    assert first + out == f"{short} | started\n{short} | finished\n", first + out


def test_datums_are_listed_and_inspected_by_id_or_prefix(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "ok", b"1\n")
    put(pfs, "src/master", "my bad file", b"2\n")
    create(pfs, tmp_path, "mixed", image, 'case "$PFS_DATUM_SRC" in *bad*) exit 4;; esac')
    [job] = wait_jobs(pfs, "mixed", 1)
    listed = pfs.cli("datum", "list", job["id"]).stdout
    assert listed.splitlines()[0].split() == ["DATUM", "STATE", "TRIES", "SECONDS", "EXIT", "PATHS"]
    as_json = pfs.cli_json("datum", "list", job["id"])
    bad = next(d for d in as_json if d["paths"] == {"src": "my bad file"})
    assert bad["state"] == "failure" and bad["exit_code"] == 4 and bad["tries"] == 1
    assert bad["id"][:12] in listed and "src:/my bad file" in listed
    inspected = pfs.cli_json("datum", "inspect", job["id"], bad["id"][:8])
    assert inspected == bad
    text = pfs.cli("datum", "inspect", job["id"], bad["id"]).stdout
    assert "exit_code:  4" in text and "src:/my bad file" in text
    missing = pfs.cli("datum", "inspect", job["id"], "abcdef00", check=False)
    assert missing.returncode == 1 and f"job {job['id']} has no datum 'abcdef00'" in missing.stderr
    bad_id = pfs.cli("datum", "inspect", job["id"], "xyz", check=False)
    assert bad_id.returncode == 1 and "'xyz' is not a datum id" in bad_id.stderr
    no_job = pfs.cli("datum", "list", "nosuchjob", check=False)
    assert no_job.returncode == 1 and "no job 'nosuchjob'" in no_job.stderr
