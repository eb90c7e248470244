"""``pfs serve``: options and PFS_* variables, the sparse pool image, one daemon per state
dir, and a clean stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pfs_volume.config import PLUGIN_DIR
from tests.docker_engine import DockerEngine
from tests.e2e.docker_user import DockerUser
from tests.pfs_node import PFS, PfsNode, unique_driver_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

GIB = 1024**3
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PROMPT_STOP = 4.0
"""Seconds; stopping used to take 5 s per socket with an idle keep-alive client."""


def fstype_at(path: Path) -> str | None:
    """The type of the file system mounted exactly at ``path``, or None."""
    target = str(path.resolve())
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == target:
                found = fields[fields.index("-") + 1]
    return found


def is_socket(path: Path) -> bool:
    return path.exists() and stat.S_ISSOCK(path.stat().st_mode)


def assert_sparse(image: Path, size: int) -> None:
    info = image.stat()
    assert info.st_size == size
    allocated = info.st_blocks * 512
    assert allocated < size // 20, f"{image}: {allocated} of {size} bytes allocated"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, a process this test started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def unmount_pool(state_dir: Path) -> None:
    pool = state_dir / "pool"
    if fstype_at(pool) is not None:
        subprocess.run(["umount", str(pool)], check=False, capture_output=True)


def test_options_are_honoured_and_the_pool_image_is_sparse(user: DockerUser) -> None:
    node = user.node
    assert is_socket(node.api_socket)
    assert is_socket(PLUGIN_DIR / f"{node.driver_name}.sock")
    assert fstype_at(node.pool_root) == "btrfs"
    assert_sparse(node.state_dir / "pool.img", 2 * GIB)

    user.run("photos", "echo hi > /data/a")

    assert [c["branch"] for c in user.log("photos")] == ["master"]
    assert_sparse(node.state_dir / "pool.img", 2 * GIB)


def test_env_vars_configure_the_daemon_and_sigterm_stops_it_cleanly(
    tmp_path: Path,
    docker_engine: DockerEngine,
    image: str,
    driver_name: str,
    attach_log: Callable[[str, Path], None],
) -> None:
    state_dir = tmp_path / "env-state"
    api_socket = tmp_path / "sockets" / "env-api.sock"
    plugin_socket = PLUGIN_DIR / f"{driver_name}.sock"
    log_path = tmp_path / "serve.log"
    attach_log("pfs serve log (env)", log_path)
    env = {
        **os.environ,
        "PFS_STATE_DIR": str(state_dir),
        "PFS_DRIVER_NAME": driver_name,
        "PFS_API_SOCKET": str(api_socket),
        "PFS_POOL_SIZE": "768M",
    }
    env.pop("PFS_API", None)
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([PFS, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (is_socket(api_socket) and is_socket(plugin_socket)):
            assert daemon.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "pfs serve did not make its sockets"
            time.sleep(0.05)
        # The sockets answer at once; volume calls once start-up is over.
        while subprocess.run(
            [PFS, "--api", str(api_socket), "repo", "list"], capture_output=True, check=False
        ).returncode:
            assert daemon.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "pfs serve did not finish starting"
            time.sleep(0.1)
        assert fstype_at(state_dir / "pool") == "btrfs"
        assert_sparse(state_dir / "pool.img", 768 * 1024**2)

        volume = ["--volume-driver", driver_name, "-v", f"{driver_name}/envrepo:/data"]
        docker_engine.run(*volume, image, "sh", "-c", "echo env > /data/e")
        client_env = {**os.environ, "PFS_API": str(api_socket)}
        done = subprocess.run(
            [PFS, "log", "envrepo", "--json"],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert '"repo": "envrepo"' in done.stdout
        docker_engine.docker("volume", "rm", f"{driver_name}/envrepo")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=STOP_TIMEOUT) == 0
        assert fstype_at(state_dir / "pool") is None, "the pool is still mounted"
        assert not plugin_socket.exists()
        assert not api_socket.exists()
    finally:
        stop_process(daemon)
        unmount_pool(state_dir)
        plugin_socket.unlink(missing_ok=True)


def serve_refused(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``pfs serve ARGS``, which should refuse to start; stop it by pid if it runs."""
    process = subprocess.Popen(
        [PFS, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=STOP_TIMEOUT)
        pytest.fail(f"a second pfs serve {args} started and served:\n{err}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_a_second_daemon_on_the_same_state_dir_is_refused(user: DockerUser, tmp_path: Path) -> None:
    first = user.node
    assert first.process is not None
    user.run("photos", "echo 1 > /data/a")
    before = user.log("photos")
    other_driver = unique_driver_name("pfse2eother")
    same_state_dir = ["--state-dir", str(first.state_dir), "--pool-size", first.pool_size]

    for sockets in (
        ["--driver-name", first.driver_name, "--api-socket", str(first.api_socket)],
        ["--driver-name", other_driver, "--api-socket", str(tmp_path / "other-api.sock")],
    ):
        second = serve_refused(same_state_dir + sockets)

        assert second.returncode == 1, second
        assert "another pfs daemon" in second.stderr
        assert f"pid {first.process.pid}" in second.stderr
        assert str(first.state_dir) in second.stderr
    assert not (PLUGIN_DIR / f"{other_driver}.sock").exists()
    assert first.process.poll() is None
    assert is_socket(first.api_socket)
    assert is_socket(first.plugin_socket)
    assert fstype_at(first.pool_root) == "btrfs"
    user.run("photos", "echo 2 > /data/b")
    after = user.log("photos")
    assert after[1:] == before
    assert user.files("photos", before[0]["id"]) == {"a": "1"}
    assert user.files("photos", after[0]["id"]) == {"a": "1", "b": "2"}


def test_sigterm_stops_promptly_while_docker_holds_a_connection(
    user: DockerUser, pfs: PfsNode
) -> None:
    """Docker keeps an idle keep-alive connection to the plugin socket after a call."""
    user.run("photos", "echo hi > /data/a")
    commits = user.log("photos")
    assert pfs.process is not None
    began = time.monotonic()
    pfs.process.send_signal(signal.SIGTERM)
    code = pfs.process.wait(timeout=STOP_TIMEOUT)
    took = time.monotonic() - began
    assert code == 0
    assert took < PROMPT_STOP, f"SIGTERM took {took:.1f} s"
    assert fstype_at(pfs.pool_root) is None, "the pool is still mounted"
    pfs.start()
    assert user.log("photos") == commits
    assert user.files("photos", "master") == {"a": "hi"}
