"""Mount records are reconciled with the engine's containers: a record no container
holds is released as Docker's Unmount would be, and commits; a held one never is.

Every end-to-end daemon reconciles every second (``RECONCILE_OFTEN`` in conftest), so
the other end-to-end tests check too that no held mount is ever released.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.docker_user import RELEASE_FILE, DockerUser
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

SETTLE = 20.0
"""Seconds a test waits for reconciliation (passes run every second)."""


def test_a_mount_no_container_holds_is_released_and_its_writes_committed(
    user: DockerUser, pfs: PfsNode
) -> None:
    """A Mount whose container never shows (Docker died, or the record outlived it)."""
    volume = user.volume("ghost")
    reply = pfs.plugin("VolumeDriver.Mount", {"Name": volume, "ID": "nobody-holds-this"})
    Path(reply["Mountpoint"], "written").write_text("by a container nobody remembers\n")
    pfs.wait_until_no_mounts(SETTLE)
    [commit] = user.log("ghost")
    assert "nobody-holds-this" in commit["message"]
    assert user.files("ghost", commit["id"]) == {"written": "by a container nobody remembers"}
    assert "mount=nobody-holds-this: no container holds it" in pfs.log()


def test_running_and_paused_containers_keep_their_mounts(user: DockerUser, pfs: PfsNode) -> None:
    running = user.start("kept")
    paused = user.start("kept")
    user.exec(running, "echo 1 > /data/one")
    user.engine.docker("pause", paused)
    ids = sorted(user.inspect_volume("kept")["Status"]["mount_ids"])
    assert len(ids) == 2
    time.sleep(3.5)  # three passes or more
    assert sorted(user.inspect_volume("kept")["Status"]["mount_ids"]) == ids
    assert user.log("kept") == []
    user.engine.docker("unpause", paused)
    assert user.release(paused) == 0
    assert user.release(running) == 0
    [commit] = user.wait_for_commits("kept", 1)
    assert user.files("kept", commit["id"]) == {"one": "1"}
    assert "no container holds it" not in pfs.log()


def test_an_unmount_cut_off_by_a_kill_is_retried_empty_and_still_commits(
    user: DockerUser, pfs: PfsNode
) -> None:
    """pfs is killed while Docker's Unmount waits on its commit: Docker retries the call
    once pfs is back, with the body its first try consumed, so the retry is empty."""
    pfs.stop()
    pfs.start(env={"PFS_FAILPOINTS": "commit.after_intent=stop"})
    container = user.start("cut")
    user.exec(container, "echo kept > /data/kept")
    engine_log = user.engine.log_mark()
    user.exec(container, f"touch {RELEASE_FILE}")
    deadline = time.monotonic() + SETTLE
    while not pfs.is_stopped():  # the Unmount's commit froze it
        assert time.monotonic() < deadline, "the Unmount's commit never started"
        time.sleep(0.1)
    pfs.kill()
    pfs.start()
    assert int(user.engine.docker("wait", container, timeout=60).stdout) == 0
    pfs.wait_until_no_mounts(SETTLE)
    [commit] = user.wait_for_commits("cut", 1)
    assert user.files("cut", commit["id"]) == {"kept": "kept"}
    retried = user.engine.log_since(engine_log)
    assert "Unable to connect to plugin" in retried and "VolumeDriver.Unmount" in retried
    assert "an Unmount arrived with an empty body" in pfs.log()


def test_doctor_shows_a_mount_no_container_holds_with_its_fix(
    tmp_path: Path, docker_engine: DockerEngine
) -> None:
    """With passes an hour apart, a stuck record waits: doctor and mount list --stale show
    it, and the command doctor gives releases it, committing."""
    node = PfsNode(
        tmp_path / "slow",
        plugin_dir=PRIVATE_PLUGIN_DIR,
        env={"PFS_DOCKER_HOST": docker_engine.host},
        args=["--reconcile-interval", "3600", "--reconcile-grace", "1"],
    )
    try:
        node.start()
        volume = f"{node.driver_name}/late"
        path = node.plugin("VolumeDriver.Mount", {"Name": volume, "ID": "stuck-one"})["Mountpoint"]
        Path(path, "f").write_text("x")
        [stale] = node.cli_json("mount", "list", "--stale")
        assert stale["id"] == "stuck-one"
        done = node.cli("doctor", check=False)
        assert done.returncode == 1
        assert "mount stuck-one of " + volume + " (late/master) is held by no container" in (
            done.stdout
        )
        assert "fix: pfs mount release stuck-one" in done.stdout
        node.cli("mount", "release", "stuck-one")
        assert node.cli_json("mount", "list", "--stale") == []
        assert node.cli("cat", "late@master", "f").stdout == "x"
        assert node.cli("doctor").returncode == 0
    finally:
        node.cleanup()
