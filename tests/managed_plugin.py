"""pfs as a managed Docker plugin on a private engine, for tests and benchmarks.

``build_plugin_dir`` runs ``scripts/build-plugin`` (debootstrap base and dependencies
cached, so a session pays seconds once the cache is warm); ``ManagedPlugin`` creates the
plugin from that folder on one engine and looks after it: settings, enable and disable,
its process (to SIGKILL it as a crash), its API socket on the host (the ``api`` mount's
source) and its pool under the plugin's propagated mount.

It is a ``PfsNode`` to the tests: ``cli``, ``cli_json``, ``api``, ``kill`` and ``start``
mean the same for the legacy daemon and the plugin, so one test runs against both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from pfs_volume.config import PLUGIN_DIR
from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode, end_process

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-plugin"
BUILD_TIMEOUT = 900.0
"""A cold build makes the debootstrap base (minutes on a loaded machine); warm: seconds."""
ENABLE_TIMEOUT = 60.0
PFS_IN_PLUGIN = "/opt/pfs/bin/pfs"
PROPAGATED_MOUNT = "/var/lib/pfs"
"""config.json's propagatedMount: the plugin's state dir."""
LEGACY = "legacy"
MANAGED = "managed"
BACKENDS = [LEGACY, MANAGED]
"""How pfs runs under the engine: the legacy daemon, or the managed plugin (the ``pfs``
fixture's parameter in tests/e2e)."""


def build_plugin_dir(target: Path, driver: str) -> Path:
    """Build the plugin folder (``config.json`` and ``rootfs``) for ``driver``.

    Args:
        target: the folder to make (replaced if it exists).
        driver: the driver name baked into its config.

    Returns:
        ``target``.
    """
    done = subprocess.run(
        [str(BUILD_SCRIPT), "--no-create", "--dir", str(target), "--driver", driver, driver],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-plugin failed ({done.returncode}):\n{done.stderr}")
    return target


class ManagedPlugin(PfsNode):
    """The managed plugin ``name`` on ``engine``, its API socket in ``state_dir``.

    Args:
        engine: the private engine that runs it.
        name: the plugin's name, also the driver name and volume-name prefix.
        state_dir: a host folder: the ``api`` mount's source (``api.sock`` appears there).
        env: settings (``PFS_*``) given with ``docker plugin set`` before enabling.
    """

    def __init__(
        self,
        engine: DockerEngine,
        name: str,
        state_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir, driver_name=name, env=env, plugin_dir=state_dir)
        self.engine = engine
        self.name = name
        self.id = ""

    def create(self, plugin_dir: Path) -> ManagedPlugin:
        """``docker plugin create`` from a built folder, then point its mounts at this
        test's folder and engine and give it its settings (still disabled)."""
        self.engine.docker("plugin", "create", self.name, str(plugin_dir), timeout=300)
        self.id = self.inspect()["Id"]
        # Docker keeps managed plugins' sockets in /run/docker/plugins/ID whatever its
        # --exec-root (a unix socket's path is short), ID being random.
        self.plugin_dir = PLUGIN_DIR / self.id
        self.plugin_socket = self.plugin_dir / f"{self.driver_name}.sock"
        self.configure()
        return self

    def configure(self) -> None:
        """Point the plugin's mounts at this test's folder and engine and give it its
        settings (the plugin must be disabled)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.set(*self.settings())

    def settings(self) -> list[str]:
        """What ``configure`` sets, as ``KEY=VALUE``."""
        return [
            f"api.source={self.state_dir}",
            f"docker.source={self.engine.socket}",
            *(f"{key}={value}" for key, value in self.env.items()),
        ]

    def inspect(self) -> dict[str, Any]:
        """``docker plugin inspect``: the plugin's JSON."""
        done = self.engine.docker("plugin", "inspect", self.name)
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found[0]

    def set(self, *settings: str) -> None:
        """``docker plugin set NAME KEY=VALUE...`` (the plugin must be disabled)."""
        if settings:
            self.engine.docker("plugin", "set", self.name, *settings)

    def enable(self) -> ManagedPlugin:
        """``docker plugin enable`` and wait until the API answers."""
        self.engine.docker("plugin", "enable", self.name, timeout=ENABLE_TIMEOUT)
        return self.start()

    def revive(self) -> None:
        """Enable the plugin if a test left it disabled, and wait until it answers
        (Docker starts a killed plugin again by itself)."""
        if not self.inspect()["Enabled"]:
            self.enable()
        self.start()

    def disable(self) -> None:
        """``docker plugin disable -f`` (even with volumes in use)."""
        self.engine.docker("plugin", "disable", "-f", self.name, timeout=ENABLE_TIMEOUT)

    def remove(self) -> None:
        """``docker plugin rm -f``; the socket folder goes with the plugin."""
        self.engine.docker("plugin", "rm", "-f", self.name, check=False, timeout=120)
        self.api_socket.unlink(missing_ok=True)

    @property
    def listed_driver(self) -> str:
        """Docker lists a managed plugin's volumes under its name with the tag."""
        return self.name if ":" in self.name else f"{self.name}:latest"

    @property
    def rootfs(self) -> Path:
        """The plugin's root file system on the host."""
        return self.engine.root / "data" / "plugins" / self.id / "rootfs"

    @property
    def pool_root(self) -> Path:
        """The pool as the host sees it: under the plugin's propagated mount."""
        return self.engine.root / "data" / "plugins" / self.id / "propagated-mount" / "pool"

    def host_path(self, mountpoint: str) -> Path:
        """Where the host sees a mount point the plugin answered: under the propagated
        mount (``/var/lib/pfs`` inside), as Docker maps it."""
        inside = Path(mountpoint).relative_to(PROPAGATED_MOUNT)
        return self.pool_root.parent / inside

    def pid(self) -> int | None:
        """The plugin's ``pfs serve`` process, if it runs: the one that runs the plugin's
        ``pfs`` with the plugin's driver name (a container's /proc/PID/root shows "/"), in
        the plugin's cgroup (named after its id): another engine on the host may run a
        plugin of the same name and build."""
        wanted = f"PFS_DRIVER_NAME={self.driver_name}".encode()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
                if PFS_IN_PLUGIN.encode() not in argv[:2]:
                    continue
                environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
                cgroup = Path(f"/proc/{entry.name}/cgroup").read_text()
            except OSError:
                continue
            if wanted in environ and self.id in cgroup:
                return int(entry.name)
        return None

    def start(self, env: dict[str, str] | None = None) -> ManagedPlugin:
        """Wait until the enabled plugin's API answers (Docker starts it again by itself
        after a crash); ``env`` is not used: settings go through ``set``."""
        deadline = time.monotonic() + ENABLE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.pid() is not None and self.api("GET", "/v1/health").ok:
                    return self
            except (requests.ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"plugin {self.name} did not answer in {ENABLE_TIMEOUT}s")

    def kill(self) -> None:
        """SIGKILL the plugin's process, as a crash; Docker starts it again."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"plugin {self.name} runs no pfs process")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + ENABLE_TIMEOUT
        while self.pid() == pid and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Disable the plugin (Docker sends SIGTERM and unmounts its mounts)."""
        self.disable()

    def cleanup(self) -> None:
        """Remove the plugin (its pool and state go with it)."""
        self.remove()

    def log(self) -> str:
        """The plugin writes to dockerd's log."""
        return self.engine.log()

    def forget_repos(self) -> None:
        """Delete every repo, so that the next test starts from an empty pool."""
        for repo in self.cli_json("repo", "list"):
            done = self.cli("repo", "delete", repo["name"], "--yes", "--force", check=False)
            if done.returncode != 0:
                raise AssertionError(f"cannot delete repo {repo['name']}: {done.stderr}")


REGISTRY_BINARY = Path("/var/cache/pfs-plugin/docker-registry")
"""Debian's docker-registry binary, unpacked by scripts/bootstrap (not installed: the
package would start a registry service for the whole host)."""


class LocalRegistry:
    """An image registry on a loopback port, storing in ``root``: what ``docker plugin
    push`` and ``docker plugin upgrade`` need. Docker speaks plain HTTP to 127.0.0.0/8.

    Args:
        root: an empty folder for its storage, config and log.
    """

    def __init__(self, root: Path) -> None:
        from tests.etcd_cluster import free_port

        self.root = root
        self.address = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        """Start it and wait until it answers."""
        if not REGISTRY_BINARY.exists():
            raise RuntimeError(f"{REGISTRY_BINARY} is missing: run scripts/bootstrap")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"http:\n  addr: {self.address}\n"
        )
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + ENABLE_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the registry exited: {(self.root / 'registry.log').read_text()}"
                )
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the registry did not answer in {ENABLE_TIMEOUT}s")

    def stop(self) -> None:
        """Stop it (by its pid)."""
        if self.process is not None:
            end_process(self.process)
        self.process = None
