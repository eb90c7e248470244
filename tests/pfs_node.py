"""A real ``pfs serve`` process for tests: its own state dir, pool image, driver name
and sockets, so runs never collide with each other or with a pfs the machine runs."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import requests_unixsocket

from pfs_volume.btrfs.pool_image import is_mountpoint
from pfs_volume.config import PLUGIN_DIR

PFS = str(Path(sys.executable).with_name("pfs"))
START_TIMEOUT = 60.0
CALL_TIMEOUT = 120.0


PRIVATE_PLUGIN_DIR = Path("/run/pfs-test-plugins")
"""Where a daemon that no Docker engine calls serves its plugin socket (``plugin_dir``).
Docker asks every socket in its own folder (``PLUGIN_DIR``) when it looks a volume up
without a driver or lists every driver's volumes, and waits about 15 s on one whose
daemon is dead: a crash test's on another xdist worker must not be there."""


def unique_driver_name(stem: str = "pfstest") -> str:
    """A driver name no other run uses (Docker finds plugins in a global folder)."""
    return f"{stem}{os.getpid()}x{secrets.token_hex(3)}"


class PfsNode:
    """One pfs daemon under test.

    Args:
        state_dir: its state dir (the pool image goes there).
        driver_name: its Docker driver name; unique per run when omitted.
        plugin_dir: the folder of its plugin socket: Docker's, or ``PRIVATE_PLUGIN_DIR``
            for a daemon that only tests call. Default: Docker's for a node given an
            engine (``PFS_DOCKER_HOST``), else the private one.
        pool_size: size of its pool image.
        env: extra environment (``PFS_FAILPOINTS``, ``PFS_DOCKER_HOST``, ...).
        args: extra ``pfs serve`` options (a cluster node's ``--etcd``, ...).

    A node given no engine (``PFS_DOCKER_HOST``) does not reconcile its mount records:
    the tests that Mount through the protocol have no container to hold the mount.
    """

    def __init__(
        self,
        state_dir: Path,
        driver_name: str | None = None,
        pool_size: str = "2G",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        plugin_dir: Path | None = None,
    ) -> None:
        if plugin_dir is None:
            plugin_dir = PLUGIN_DIR if "PFS_DOCKER_HOST" in (env or {}) else PRIVATE_PLUGIN_DIR
        self.state_dir = state_dir
        self.args = list(args or [])
        if "PFS_DOCKER_HOST" not in (env or {}) and "--reconcile-interval" not in self.args:
            self.args += ["--reconcile-interval", "0"]
        self.driver_name = driver_name or unique_driver_name()
        self.pool_size = pool_size
        self.api_socket = state_dir / "api.sock"
        self.plugin_dir = plugin_dir
        self.plugin_socket = plugin_dir / f"{self.driver_name}.sock"
        self.log_path = state_dir / "daemon.log"
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._session = requests_unixsocket.Session()

    @property
    def listed_driver(self) -> str:
        """The driver name Docker lists this node's volumes with."""
        return self.driver_name

    @property
    def pool_root(self) -> Path:
        """Where the node's btrfs pool is mounted."""
        return self.state_dir / "pool"

    def start(self, env: dict[str, str] | None = None, ready: bool = True) -> PfsNode:
        """Start the daemon and wait until both sockets answer; with ``ready``, until
        start-up is over too (the API's health is ok)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("PFS_API", None)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                PFS,
                "serve",
                "--state-dir",
                str(self.state_dir),
                "--driver-name",
                self.driver_name,
                "--api-socket",
                str(self.api_socket),
                "--plugin-dir",
                str(self.plugin_dir),
                "--pool-size",
                self.pool_size,
                "--log-level",
                "debug",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pfs serve exited {self.process.returncode}:\n{self.log()}")
            try:
                self.plugin("Plugin.Activate")
                if self.api("GET", "/v1/health").ok or not ready:
                    return self
                time.sleep(0.05)
            except (requests.ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"pfs serve did not come up in {START_TIMEOUT}s:\n{self.log()}")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until start-up is over (the API's health is ok); fail with the log."""
        deadline = time.monotonic() + timeout
        while not self.api("GET", "/v1/health").ok:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"pfs serve exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pfs serve was not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """Everything the daemon printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the daemon: no cleanup at all, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP the daemon: it stays alive but does nothing (renews no lease)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused daemon."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the daemon to exit by itself (e.g. at a failpoint); its status."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def stop(self) -> None:
        """SIGTERM the daemon and wait for it."""
        if self.process is not None:
            end_process(self.process, signal.SIGCONT, signal.SIGTERM)
        self.process = None

    def cleanup(self) -> None:
        """Stop the daemon, unmount its pool (detaching the loop device), drop sockets."""
        self.stop()
        if is_mountpoint(self.pool_root):
            subprocess.run(["umount", str(self.pool_root)], check=False, capture_output=True)
            if is_mountpoint(self.pool_root):
                subprocess.run(["umount", "-l", str(self.pool_root)], check=False)
        self.plugin_socket.unlink(missing_ok=True)
        self.api_socket.unlink(missing_ok=True)

    def plugin(self, method: str, body: Any = None, raw: bytes | None = None) -> Any:
        """POST to the plugin socket as Docker does (no Content-Type); decoded reply."""
        url = "http+unix://" + str(self.plugin_socket).replace("/", "%2F") + "/" + method
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = self._session.post(url, data=data, timeout=CALL_TIMEOUT)
        return response.json()

    def api(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        """Call the pfs HTTP API (with ``body`` as JSON, if given); the raw response."""
        url = "http+unix://" + str(self.api_socket).replace("/", "%2F") + path
        return self._session.request(method, url, params=params, json=body, timeout=CALL_TIMEOUT)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``pfs`` CLI against this node."""
        done = subprocess.run(
            [PFS, "--api", str(self.api_socket), *args],
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pfs {' '.join(args)} failed: {done.stderr}")
        return done

    def is_stopped(self) -> bool:
        """True while the daemon is stopped (SIGSTOP, e.g. at a ``NAME=stop`` failpoint)."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"

    def wait_until_no_mounts(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the node holds no mount record, as
        reconciliation leaves it once no container holds any; fail naming those left."""
        deadline = time.monotonic() + timeout
        while left := self.cli_json("mount", "list"):
            assert time.monotonic() < deadline, f"mount records stayed: {left}"
            time.sleep(0.2)

    def cli_json(self, *args: str) -> Any:
        """Run a CLI verb with ``--json`` and decode its output."""
        return json.loads(self.cli(*args, "--json").stdout)


def end_process(process: subprocess.Popen[Any], *signals: int) -> None:
    """Send ``signals`` (SIGTERM by default) to a process still running, wait up to 30 s
    for it to end, then kill it."""
    if process.poll() is not None:
        return
    for number in signals or (signal.SIGTERM,):
        process.send_signal(number)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
