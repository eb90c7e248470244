"""Pipelines and the Docker engine they run on: pfs never pulls an image."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.test_pipelines import put, wait_jobs
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

MISSING_IMAGE = "pfs-test-not-here:never"


def write_spec(path: Path, name: str, repo: str, image: str, script: str, **extra: Any) -> Path:
    path.write_text(
        json.dumps(
            {
                "name": name,
                "input": {"repo": repo, "glob": "/*"},
                "transform": {"image": image, "cmd": ["sh", "-c", script]},
                **extra,
            }
        )
    )
    return path


def image_events(engine: DockerEngine, since: str) -> list[dict[str, Any]]:
    done = engine.docker(
        "events", "--since", since, "--until", str(int(time.time()) + 1), "--format", "{{json .}}"
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_missing_image_is_never_pulled_and_the_error_says_what_to_do(
    pfs: PfsNode, image: str, tmp_path: Path, docker_engine: DockerEngine
) -> None:
    since = str(int(time.time()) - 1)
    mark = docker_engine.log_mark()
    pfs.cli("repo", "create", "pics")
    put(pfs, "pics/master", "a", b"1\n")
    # Tries are not spent on it: another try cannot find the image either.
    spec = write_spec(tmp_path / "s.json", "nopull", "pics", MISSING_IMAGE, "true", datum_tries=3)
    created = pfs.cli("pipeline", "create", "-f", str(spec))
    # Creating it is not refused (the image may be loaded later), but the user is told.
    assert "warning:" in created.stderr and MISSING_IMAGE in created.stderr, created
    assert "never pulls" in created.stderr
    as_json = pfs.cli_json("pipeline", "inspect", "nopull")
    assert as_json["name"] == "nopull"
    [job] = wait_jobs(pfs, "nopull", 1)
    assert job["state"] == "failure", job
    error = job["error"]
    assert MISSING_IMAGE in error and docker_engine.host in error, error
    assert "never pulls" in error and "docker load" in error, error
    [datum] = job["datums"]
    assert datum["tries"] == 1 and MISSING_IMAGE in datum["error"], datum
    assert pfs.cli_json("log", "nopull") == []
    # No pull was tried: the engine has no registry, so one would show as an event or
    # in its log.
    events = image_events(docker_engine, since)
    assert not [e for e in events if e.get("Action") == "pull" or e.get("status") == "pull"]
    assert "pull" not in docker_engine.log_since(mark).lower()
    # An update warns the same way; with a good image there is no warning.
    updated = pfs.cli("pipeline", "update", "-f", str(spec))
    assert MISSING_IMAGE in updated.stderr
    good = write_spec(tmp_path / "g.json", "nopull", "pics", image, "true")
    assert "warning" not in pfs.cli("pipeline", "update", "-f", str(good)).stderr
    other = write_spec(tmp_path / "o.json", "nopull2", "pics", MISSING_IMAGE, "true")
    [warning] = pfs.cli_json("pipeline", "create", "-f", str(other))["warnings"]
    assert MISSING_IMAGE in warning and "never pulls" in warning
