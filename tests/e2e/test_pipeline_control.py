"""Pipelines under control, end to end on a private Docker engine: consistent diamonds,
jobs of several pipelines at once, stop/start/delete killing a running job, reruns that
never duplicate or roll back an output, reprocess, and waits for scripts."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

JOB_WAIT = 120.0


def put(pfs: PfsNode, target: str, path: str, data: bytes) -> None:
    from tests.pfs_node import PFS

    done = subprocess.run(
        [PFS, "--api", str(pfs.api_socket), "put", target, path],
        input=data,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def spec_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def create_pipeline(pfs: PfsNode, tmp_path: Path, name: str, text: str) -> None:
    pfs.cli("pipeline", "create", "-f", spec_file(tmp_path, name, text))


def until(what: str, check: Any, pfs: PfsNode, timeout: float = JOB_WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout} s\n{pfs.log()[-3000:]}")


def jobs_of(pfs: PfsNode, pipeline: str) -> list[dict[str, Any]]:
    return pfs.cli_json("job", "list", "--pipeline", pipeline)


def containers_of(engine: DockerEngine, job_id: str) -> list[str]:
    return engine.docker("ps", "-aq", "--filter", f"label=pfs.job={job_id}").stdout.split()


def test_a_diamond_never_mixes_a_new_upstream_commit_with_an_old_one(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "src")
    put(pfs, "src/master", "version", b"1\n")
    # mid copies src's version slowly; top reads src and mid and writes both versions.
    create_pipeline(
        pfs,
        tmp_path,
        "mid",
        "name: mid\ninput: {repo: src}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, "
        "'sleep 1; cat /pfs/in/src/version > /pfs/out/version']}\n",
    )
    create_pipeline(
        pfs,
        tmp_path,
        "top",
        "name: top\ninput: {cross: [{repo: src}, {repo: mid}]}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, "
        "'echo $(cat /pfs/in/src/version) $(cat /pfs/in/mid/version) > /pfs/out/pair']}\n",
    )
    for version in range(2, 5):
        put(pfs, "src/master", "version", f"{version}\n".encode())
        time.sleep(0.4)
    head = pfs.cli_json("commit", "inspect", "src@master")["id"]
    waited = pfs.cli("wait", f"src@{head}", "--timeout", "120", check=False)
    assert waited.returncode == 0, waited.stderr
    assert "mid" in waited.stdout and "top" in waited.stdout and "success" in waited.stdout
    pairs = []
    for commit in pfs.cli_json("log", "top"):
        pair = pfs.cli("cat", f"top@{commit['id']}", "pair").stdout.split()
        pairs.append(pair)
        assert pair[0] == pair[1], f"top mixed src {pair[0]} with mid made from {pair[1]}"
    assert pairs[0] == ["4", "4"], pairs
    for job in jobs_of(pfs, "top"):
        src = job["inputs"]["src"]
        mid_commit = pfs.cli_json("commit", "inspect", job["inputs"]["mid"])
        assert mid_commit["provenance"] == [src], (job, mid_commit)


def test_jobs_of_two_pipelines_run_at_once_and_stop_start_delete_kill_a_running_job(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    pfs.cli("repo", "create", "knob")
    put(pfs, "knob/master", "secs", b"300\n")
    slow = spec_file(
        tmp_path,
        "slow",
        "name: slow\ninput: {repo: knob}\n"
        f"transform: {{image: '{image}', cmd: [sh, -c, "
        "'sleep $(cat /pfs/in/knob/secs); echo done > /pfs/out/result']}\n",
    )
    pfs.cli("pipeline", "create", "-f", slow)
    first = until(
        "slow's job running",
        lambda: [j for j in jobs_of(pfs, "slow") if j["state"] == "running"],
        pfs,
    )[0]
    until("slow's container", lambda: containers_of(docker_engine, first["id"]), pfs)
    # Another pipeline's job runs and ends while slow's job still runs.
    create_pipeline(
        pfs,
        tmp_path,
        "quick",
        f"name: quick\ninput: {{repo: knob}}\ntransform: {{image: '{image}', "
        "cmd: [sh, -c, 'cp /pfs/in/knob/secs /pfs/out/']}\n",
    )
    until(
        "quick's job done",
        lambda: [j for j in jobs_of(pfs, "quick") if j["state"] == "success"],
        pfs,
    )
    assert pfs.cli_json("job", "inspect", first["id"])["state"] == "running"

    stopped = pfs.cli("pipeline", "stop", "slow")
    assert f"killed job {first['id']}" in stopped.stdout, stopped.stdout
    killed = pfs.cli_json("job", "inspect", first["id"])
    assert killed["state"] == "killed" and "stopped" in killed["error"], killed
    assert containers_of(docker_engine, first["id"]) == []
    assert pfs.cli_json("log", "slow") == [], "a killed job commits nothing"
    assert pfs.cli_json("pipeline", "inspect", "slow")["stopped"] is True
    time.sleep(2)
    assert [j["state"] for j in jobs_of(pfs, "slow")] == ["killed"], "stopped: no new job"
    waited = pfs.cli("job", "wait", first["id"], check=False)
    assert waited.returncode == 1 and "killed" in waited.stdout

    put(pfs, "knob/master", "secs", b"0\n")
    pfs.cli("pipeline", "start", "slow")
    ran = until(
        "slow's job after start",
        lambda: [j for j in jobs_of(pfs, "slow") if j["state"] == "success"],
        pfs,
    )
    assert pfs.cli("cat", "slow@master", "result").stdout.strip() == "done", ran

    # Deleting a pipeline kills its running job too.
    put(pfs, "knob/master", "secs", b"300\n")
    running = until(
        "slow's next job running",
        lambda: [
            j
            for j in jobs_of(pfs, "slow")
            if j["state"] == "running" and containers_of(docker_engine, j["id"])
        ],
        pfs,
    )[0]
    heads_before = len(pfs.cli_json("log", "slow"))
    deleted = pfs.cli("pipeline", "delete", "slow")
    assert f"killed job {running['id']}" in deleted.stdout, deleted.stdout
    gone = pfs.cli_json("job", "inspect", running["id"])
    assert gone["state"] == "killed" and "deleted" in gone["error"], gone
    assert containers_of(docker_engine, running["id"]) == []
    assert len(pfs.cli_json("log", "slow")) == heads_before


def test_rerun_never_duplicates_or_rolls_back_an_output_and_waits_exit_as_documented(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.cli("repo", "create", "nums")
    put(pfs, "nums/master", "n", b"bad\n")
    create_pipeline(
        pfs,
        tmp_path,
        "check",
        f"name: check\ninput: {{repo: nums, glob: /*}}\ntransform: {{image: '{image}', "
        'cmd: [sh, -c, \'f=/pfs/in/nums/$(basename "$PFS_DATUM_NUMS"); '
        'grep -qv bad "$f" && cp "$f" /pfs/out/\']}\n',
    )
    bad_commit = pfs.cli_json("commit", "inspect", "nums@master")["id"]
    [failed] = until(
        "the failing job",
        lambda: [j for j in jobs_of(pfs, "check") if j["state"] == "failure"],
        pfs,
    )
    waited = pfs.cli("wait", f"nums@{bad_commit}", "--timeout", "60", check=False)
    assert waited.returncode == 1 and "failure" in waited.stdout, waited
    job_wait = pfs.cli("job", "wait", failed["id"], check=False)
    assert job_wait.returncode == 1 and "failure" in job_wait.stdout

    put(pfs, "nums/master", "n", b"7\n")
    good_commit = pfs.cli_json("commit", "inspect", "nums@master")["id"]
    waited = pfs.cli("wait", f"nums@{good_commit}", "--timeout", "60", check=False)
    assert waited.returncode == 0, waited
    assert len(pfs.cli_json("log", "check")) == 1
    good = jobs_of(pfs, "check")[-1]
    assert pfs.cli("job", "wait", good["id"], check=False).returncode == 0

    refused = pfs.cli("job", "rerun", failed["id"], check=False)
    assert refused.returncode == 1
    assert "move the output back to older data" in refused.stderr, refused.stderr
    again = pfs.cli("job", "rerun", good["id"], check=False)
    assert again.returncode == 1 and "commit the same output again" in again.stderr
    time.sleep(2)
    assert len(pfs.cli_json("log", "check")) == 1, "no duplicate output commit"
    assert len(jobs_of(pfs, "check")) == 2

    # --reprocess runs every datum again, reusing nothing.
    spec = pfs.cli_json("pipeline", "inspect", "check")
    assert spec["stopped"] is False
    put(pfs, "nums/master", "m", b"8\n")
    until(
        "the incremental job",
        lambda: len(jobs_of(pfs, "check")) == 3 and jobs_of(pfs, "check")[-1]["state"] == "success",
        pfs,
    )
    assert sorted(d["state"] for d in jobs_of(pfs, "check")[-1]["datums"]) == ["reused", "success"]
    updated = pfs.cli(
        "pipeline",
        "update",
        "--reprocess",
        "-f",
        spec_file(
            tmp_path,
            "check",
            f"name: check\ninput: {{repo: nums, glob: /*}}\ntransform: {{image: '{image}', "
            'cmd: [sh, -c, \'f=/pfs/in/nums/$(basename "$PFS_DATUM_NUMS"); '
            'grep -qv bad "$f" && cp "$f" /pfs/out/\']}\n',
        ),
    )
    assert "every datum runs again" in updated.stdout
    last = until(
        "the reprocessing job",
        lambda: (
            len(jobs_of(pfs, "check")) == 4
            and jobs_of(pfs, "check")[-1]["state"] == "success"
            and jobs_of(pfs, "check")[-1]
        ),
        pfs,
    )
    assert [d["state"] for d in last["datums"]] == ["success", "success"], last["datums"]


def test_waits_refuse_bad_input_clearly(pfs: PfsNode) -> None:
    pfs.cli("repo", "create", "w")
    put(pfs, "w/master", "f", b"1\n")
    assert pfs.cli("wait", "w@master").stdout.strip().endswith("(no pipeline reads it)")
    missing = pfs.cli("job", "wait", "nope", check=False)
    assert missing.returncode == 1 and "no job 'nope'" in missing.stderr
    bad = pfs.cli("wait", "w@zzz", check=False)
    assert bad.returncode == 1 and "zzz" in bad.stderr
    negative = pfs.cli("job", "wait", "x", "--timeout", "-1", check=False)
    assert negative.returncode == 2 and "-1" in negative.stderr


def test_the_node_wide_job_limit_holds_and_queued_jobs_still_run(
    pfs: PfsNode, image: str, tmp_path: Path
) -> None:
    pfs.stop()
    pfs.args += ["--max-jobs", "1"]
    pfs.start()
    pfs.cli("repo", "create", "feed")
    put(pfs, "feed/master", "x", b"1\n")
    for name in ("one", "two", "three"):
        create_pipeline(
            pfs,
            tmp_path,
            name,
            f"name: {name}\ninput: {{repo: feed}}\ntransform: {{image: '{image}', "
            "cmd: [sh, -c, 'sleep 1; cp /pfs/in/feed/x /pfs/out/']}\n",
        )
    most = 0
    deadline = time.monotonic() + JOB_WAIT
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [j["state"] for j in pfs.cli_json("job", "list")]
        most = max(most, states.count("running"))
        if states.count("success") == 3:
            break
        time.sleep(0.1)
    assert states.count("success") == 3, states
    assert most == 1, f"{most} jobs ran at once with --max-jobs 1"
