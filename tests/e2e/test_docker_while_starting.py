"""What a real Docker engine makes of a pfs that is still starting (its start-up held
just before the pool is ready): the plugin answers, the engine's volume list carries
pfs's reason as a warning and lists the rest, a Create waits for pfs and is then
served, and everything works once pfs is ready."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests_unixsocket

from tests.docker_engine import DockerEngine
from tests.e2e.conftest import RECONCILE_OFTEN, forget_docker_state
from tests.integration.test_starting import HeldStart, wait_for_log
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

STEP = "start.pool_ready"
STARTING = "pfs is starting: preparing the pool"


def test_docker_shows_pfs_starting_as_a_warning_and_a_clear_error(
    tmp_path: Path,
    docker_engine: DockerEngine,
    image: str,
    driver_name: str,
    attach_log: Callable[[str, Path], None],
) -> None:
    held = HeldStart(tmp_path / "hold")
    session = requests_unixsocket.Session()
    api = "http+unix://" + str(docker_engine.socket).replace("/", "%2F")
    node = PfsNode(
        tmp_path / "pfs",
        driver_name=driver_name,
        env={"PFS_DOCKER_HOST": docker_engine.host, **held.env(STEP)},
        args=RECONCILE_OFTEN,
    )
    attach_log(f"pfs daemon log ({node.state_dir})", node.log_path)
    try:
        node.start(ready=False)
        held.wait_held(STEP, node)

        # List's Err is a warning of the engine's answer (the docker CLI does not show
        # it); `docker volume ls` still succeeds with every other driver's volumes.
        assert docker_engine.docker("volume", "ls", "--filter", f"driver={driver_name}")
        by_driver = json.dumps({"driver": [driver_name]})
        answer = session.get(f"{api}/volumes", params={"filters": by_driver}, timeout=60).json()
        # (Its Volumes may hold names the engine remembers of this session's driver from
        # an earlier test: its own records, not pfs's answer.)
        assert f"list {driver_name}: VolumeDriver.List: {STARTING}" in answer["Warnings"]
        # Docker ignores a plugin's Get error when it looks a name up across drivers.
        inspected = docker_engine.docker("volume", "inspect", f"{driver_name}/x", check=False)
        assert "no such volume" in inspected.stderr, inspected
        # A Create waits for start-up to end (its Err comes after READY_WAIT).
        created: list[Any] = []
        creating = threading.Thread(
            target=lambda: created.append(
                docker_engine.docker("volume", "create", "--driver", driver_name, "early")
            )
        )
        creating.start()
        wait_for_log(node, f"Create waits for start-up ({STARTING})")

        held.release(STEP)
        creating.join(timeout=120)
        assert [done.stdout.strip() for done in created] == ["early"]
        node.wait_ready()
        docker_engine.run(
            "--volume-driver",
            driver_name,
            "-v",
            "early:/data",
            image,
            "sh",
            "-c",
            "echo 1 > /data/a",
        )
        assert [c["branch"] for c in node.cli_json("log", "early")] == ["master"]
        listed = docker_engine.docker("volume", "ls", "--filter", f"driver={driver_name}")
        assert "early" in listed.stdout and STARTING not in listed.stderr
    finally:
        held.release(STEP)  # a daemon Docker still calls must answer (see conftest)
        try:
            forget_docker_state(docker_engine, driver_name)
        finally:
            node.cleanup()
