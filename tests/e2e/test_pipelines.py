"""Pipelines end to end: the wordcount example on a private Docker engine, with
provenance, incremental datums, failures and job logs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wordcount"
JOB_WAIT = 120.0


def put(pfs: PfsNode, target: str, path: str, data: bytes) -> None:
    done = subprocess.run(
        [*pfs_cli(pfs), "put", target, path], input=data, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr


def pfs_cli(pfs: PfsNode) -> list[str]:
    from tests.pfs_node import PFS

    return [PFS, "--api", str(pfs.api_socket)]


def wait_jobs(pfs: PfsNode, pipeline: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``pipeline`` has ``count`` finished jobs; all its jobs."""
    deadline = time.monotonic() + JOB_WAIT
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        jobs = pfs.cli_json("job", "list", "--pipeline", pipeline)
        if len([j for j in jobs if j["state"] in ("success", "failure", "killed")]) >= count:
            return jobs
        time.sleep(0.3)
    raise AssertionError(
        f"{pipeline}: {count} finished job(s) expected; jobs: {jobs}\n{pfs.log()[-3000:]}"
    )


def test_wordcount_map_reduce_with_provenance_and_incremental_datums(
    pfs: PfsNode, image: str
) -> None:
    pfs.cli("repo", "create", "text")
    put(pfs, "text/master", "a.txt", b"one two three\n")
    put(pfs, "text/master", "b.txt", b"four five\n")
    pfs.cli("pipeline", "create", "-f", str(EXAMPLE / "map.json"))
    pfs.cli("pipeline", "create", "-f", str(EXAMPLE / "reduce.yaml"))
    [map_job] = wait_jobs(pfs, "map", 1)
    [reduce_job] = wait_jobs(pfs, "reduce", 1)
    assert map_job["state"] == "success", map_job
    assert reduce_job["state"] == "success", reduce_job
    assert pfs.cli("cat", "map@master", "a.txt.count").stdout.strip() == "3"
    assert pfs.cli("cat", "reduce@master", "total").stdout.strip() == "5"
    assert len(map_job["datums"]) == 2 and all(d["state"] == "success" for d in map_job["datums"])
    # The output commit says which input commits made it, both ways.
    head = pfs.cli_json("commit", "inspect", "reduce@master")
    assert head["job"] == reduce_job["id"] and head["origin"] == "pipeline"
    prov = pfs.cli_json("provenance", "reduce@master")
    text_head = pfs.cli_json("commit", "inspect", "text@master")["id"]
    assert f"text@{text_head}" in prov["upstream"]
    assert map_job["output"] in prov["upstream"]
    assert pfs.cli_json("provenance", f"text@{text_head}")["downstream"] == [
        map_job["output"],
        reduce_job["output"],
    ]

    # One file changes: only its datum runs again; reduce sums anew.
    put(pfs, "text/master", "a.txt", b"one two three four five six\n")
    jobs = wait_jobs(pfs, "map", 2)
    second = jobs[-1]
    assert second["state"] == "success", second
    states = sorted(d["state"] for d in second["datums"])
    assert states == ["reused", "success"], second["datums"]
    ran = [d for d in second["datums"] if d["state"] == "success"]
    assert ran[0]["paths"] == {"text": "a.txt"}
    wait_jobs(pfs, "reduce", 2)
    assert pfs.cli("cat", "reduce@master", "total").stdout.strip() == "8"
    logs = pfs.cli("job", "logs", second["id"]).stdout
    assert "=== datum" in logs


def test_a_failing_job_leaves_the_output_branch_as_it_was(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "nums")
    put(pfs, "nums/master", "x", b"1\n")
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        f"name: bad\ninput: {{repo: nums, glob: /*}}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, 'echo oops >&2; exit 3']}}\n"
    )
    pfs.cli("pipeline", "create", "-f", str(spec))
    [job] = wait_jobs(pfs, "bad", 1)
    assert job["state"] == "failure" and "exit 3" in job["error"], job
    assert pfs.cli_json("log", "bad") == []
    assert "oops" in pfs.cli("job", "logs", job["id"]).stdout
    # Two datums writing one path fail the job with the path named.
    put(pfs, "nums/master", "y", b"2\n")
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        f"name: clash\ninput: {{repo: nums, glob: /*}}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, 'echo $PFS_DATUM_ID > /pfs/out/same']}}\n"
    )
    pfs.cli("pipeline", "create", "-f", str(clash))
    [job] = wait_jobs(pfs, "clash", 1)
    assert job["state"] == "failure" and "same" in job["error"], job


def test_a_bad_spec_is_refused_with_every_problem_and_nothing_stored(
    pfs: PfsNode, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text('{"name": "x/y", "input": {"repo": "", "glob": "../a"}, "transform": {}}')
    done = pfs.cli("pipeline", "create", "-f", str(spec), check=False)
    assert done.returncode != 0
    for field in ("name", "input.repo", "input.glob", "transform.image", "transform.cmd"):
        assert field in done.stderr, done.stderr
    assert pfs.cli_json("pipeline", "list") == []


def test_daemon_killed_mid_job_fails_it_cleans_up_and_runs_it_again(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "slow")
    put(pfs, "slow/master", "x", b"x\n")
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        "name: slowpoke\ninput: {repo: slow, glob: /}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, 'sleep 4; echo done > /pfs/out/result']}}\n"
    )
    pfs.cli("pipeline", "create", "-f", str(spec))
    deadline = time.monotonic() + JOB_WAIT
    running: list[str] = []
    while time.monotonic() < deadline and not running:
        running = docker_engine.docker("ps", "-q", "--filter", "label=pfs.job").stdout.split()
        time.sleep(0.2)
    assert running, "the job's container never started"
    [job] = pfs.cli_json("job", "list", "--pipeline", "slowpoke")
    pfs.kill()
    pfs.start()
    jobs = wait_jobs(pfs, "slowpoke", 2)
    first = next(j for j in jobs if j["id"] == job["id"])
    assert first["state"] == "failure" and "stopped during the job" in first["error"], first
    assert jobs[-1]["state"] == "success", jobs
    leftovers = docker_engine.docker(
        "ps", "-aq", "--filter", f"label=pfs.job={job['id']}"
    ).stdout.split()
    assert leftovers == [], "the interrupted job's container was not removed"
    [output] = pfs.cli_json("log", "slowpoke")
    assert output["job"] == jobs[-1]["id"]
    assert pfs.cli("cat", "slowpoke@master", "result").stdout.strip() == "done"
    scratch = pfs.pool_root / "pipelines" / "slowpoke" / "scratch" / job["id"]
    assert not scratch.exists()


VOLUMES_GONE_WITHIN = 30.0


def test_a_job_leaves_no_docker_volumes_behind(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "tidy")
    put(pfs, "tidy/master", "f", b"1\n")
    spec = tmp_path / "tidy.yaml"
    spec.write_text(
        "name: tidied\ninput: {repo: tidy}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, 'true']}}\n"
    )
    pfs.cli("pipeline", "create", "-f", str(spec))
    [job] = wait_jobs(pfs, "tidied", 1)
    assert job["state"] == "success", job
    # The job's end is recorded first and its volumes removed right after (a stuck
    # engine must not hold the end back), so they go within moments of "success", not
    # before it. Listed by driver: an unfiltered ls makes dockerd ask every socket in the
    # host's plugin folder, and waits ~15 s on each one whose daemon is gone.
    deadline = time.monotonic() + VOLUMES_GONE_WITHIN
    while True:
        listed = docker_engine.docker(
            "volume",
            "ls",
            "-q",
            "--filter",
            f"driver={pfs.driver_name}",
            "--filter",
            "driver=local",
        ).stdout.split()
        left = [v for v in listed if "tidy@" in v]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, listed


# Names no shell loop over a space-separated list survives: a space, a newline, a leading
# dash, quotes, and bytes that are not UTF-8 (written by the container, as users do).
AWKWARD_NAMES = r"""
cd /data
printf 'one two\n' > 'my notes.txt'
printf 'a b c\n' > "$(printf 'new\nline.txt')"
printf 'x y z w\n' > -dash.txt
printf 'q\n' > "it's \"quoted\".txt"
printf 'p q r s t u\n' > "$(printf 'caf\351.txt')"
"""
AWKWARD_COUNTS = r"""
cd /m
test "$(cat 'my notes.txt.count')" = 2
test "$(cat "$(printf 'new\nline.txt.count')")" = 3
test "$(cat ./-dash.txt.count)" = 4
test "$(cat "it's \"quoted\".txt.count")" = 1
test "$(cat "$(printf 'caf\351.txt.count')")" = 6
echo counted
"""


def test_datum_paths_survive_any_file_name(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "text")
    # The driver is given: a name looked up across drivers waits on every gone driver the
    # engine knows (test_docker_volume_flow covers that lookup).
    driver = ["--volume-driver", pfs.driver_name]
    docker_engine.run(
        *driver, "-v", f"{pfs.driver_name}/text/master:/data", image, "sh", "-c", AWKWARD_NAMES
    )
    pfs.cli("pipeline", "create", "-f", str(EXAMPLE / "map.json"))
    pfs.cli("pipeline", "create", "-f", str(EXAMPLE / "reduce.yaml"))
    spec = tmp_path / "show.json"
    show = (
        'cp /pfs/datum/datum.json "/pfs/out/$PFS_DATUM_ID.json"; '
        'cp /pfs/datum/paths "/pfs/out/$PFS_DATUM_ID.paths"; '
        'printf %s "$PFS_DATUM_TEXT" > "/pfs/out/$PFS_DATUM_ID.env"'
    )
    spec.write_text(
        json.dumps(
            {
                "name": "show",
                "input": {"repo": "text", "glob": "/*"},
                "transform": {"image": image, "cmd": ["sh", "-c", show]},
            }
        )
    )
    pfs.cli("pipeline", "create", "-f", str(spec))
    [map_job] = wait_jobs(pfs, "map", 1)
    assert map_job["state"] == "success", map_job
    assert len(map_job["datums"]) == 5
    [reduce_job] = wait_jobs(pfs, "reduce", 1)
    assert reduce_job["state"] == "success", reduce_job
    assert pfs.cli("cat", "reduce@master", "total").stdout.strip() == "16"
    # A pipeline's output branch is read at a commit (only its jobs write the branch).
    head = pfs.cli_json("commit", "inspect", "map@master")["id"]
    done = docker_engine.run(
        *driver, "-v", f"{pfs.driver_name}/map@{head}:/m:ro", image, "sh", "-c", AWKWARD_COUNTS
    )
    assert done.stdout.strip() == "counted"

    [show_job] = wait_jobs(pfs, "show", 1)
    assert show_job["state"] == "success", show_job
    seen: dict[bytes, dict[str, Any]] = {}
    for datum in show_job["datums"]:
        document = json.loads(pfs.cli("cat", "show@master", f"{datum['id']}.json").stdout)
        assert document["id"] == datum["id"] and document["job"] == show_job["id"]
        [entry] = document["inputs"]
        exact = base64.b64decode(entry["path_base64"])
        assert os.fsencode(entry["path"]) == exact  # lone surrogates give the bytes back
        raw_paths = subprocess.run(
            [*pfs_cli(pfs), "cat", "show@master", f"{datum['id']}.paths"],
            capture_output=True,
            check=True,
        ).stdout
        assert raw_paths == exact + b"\0"
        env = pfs.cli("cat", "show@master", f"{datum['id']}.env").stdout
        # Docker's API is JSON: a path that is not UTF-8 cannot be in the environment.
        assert env == ("" if b"\xe9" in exact else exact.decode())
        seen[exact] = entry
    assert set(seen) == {
        b"/pfs/in/text/my notes.txt",
        b"/pfs/in/text/new\nline.txt",
        b"/pfs/in/text/-dash.txt",
        b'/pfs/in/text/it\'s "quoted".txt',
        b"/pfs/in/text/caf\xe9.txt",
    }
