"""A private Docker engine for tests and benchmarks.

It never touches an engine the machine already runs: its own data root, exec root,
pidfile, socket and containerd namespace, no bridge and no iptables. Images come from
local files only: ``busybox_image`` imports a tar of a folder that holds the static
busybox binary from Debian's ``busybox-static``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
BUSYBOX_TOOLS = (
    "sh",
    "cat",
    "echo",
    "ls",
    "rm",
    "mkdir",
    "sleep",
    "touch",
    "true",
    "wc",
    "md5sum",
    "dd",
    "test",
    "find",
    "sync",
    "head",
    "seq",
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def docker_cli() -> str:
    """The docker client binary on PATH."""
    path = shutil.which("docker")
    if path is None:
        raise RuntimeError("the docker client is missing; scripts/bootstrap installs docker.io")
    return path


class DockerEngine:
    """``dockerd`` started for one test session (or one benchmark run).

    Args:
        root: an empty folder for its data root, exec root, pidfile, socket and log.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self.namespace = f"pfstest{os.getpid()}"

    def start(self) -> DockerEngine:
        """Start dockerd and wait until it answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "-H",
                self.host,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--containerd-namespace",
                self.namespace,
                "--containerd-plugins-namespace",
                self.namespace + "p",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.process.returncode}:\n{self.log()}")
            if self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        """The tail of what dockerd printed."""
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-20000:] if path.exists() else ""

    def log_mark(self) -> int:
        """Where dockerd's log ends now (for ``log_since``)."""
        path = self.root / "dockerd.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, mark: int) -> str:
        """What dockerd printed after ``mark`` (from ``log_mark``)."""
        with open(self.root / "dockerd.log", "rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def docker(
        self, *args: str, check: bool = True, timeout: float = 180.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine."""
        done = subprocess.run(
            [docker_cli(), "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def busybox_image(self, tag: str = "pfs-test-busybox:1") -> str:
        """Import a busybox image from the local static binary (once); its tag."""
        if self.docker("image", "inspect", tag, check=False).returncode == 0:
            return tag
        with tempfile.TemporaryDirectory() as tmp:
            bin_dir = Path(tmp) / "bin"
            bin_dir.mkdir()
            shutil.copy2(BUSYBOX, bin_dir / "busybox")
            for tool in BUSYBOX_TOOLS:
                (bin_dir / tool).symlink_to("busybox")
            tar = subprocess.run(["tar", "-C", tmp, "-c", "."], capture_output=True, check=True)
            subprocess.run(
                [docker_cli(), "-H", self.host, "import", "-", tag],
                input=tar.stdout,
                capture_output=True,
                check=True,
            )
        return tag

    def run(
        self, *args: str, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """``docker run --rm --pull=never --network none ARGS``."""
        return self.docker(
            "run",
            "--rm",
            "--pull=never",
            "--network",
            "none",
            *args,
            check=check,
            timeout=timeout,
        )

    def stop(self) -> None:
        """Stop dockerd (and the containerd it started); remove its folders' mounts."""
        if self.process is not None and self.process.poll() is None:
            for container in self.docker("ps", "-aq", check=False).stdout.split():
                self.docker("rm", "-f", container, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None
        _unmount_below(self.root)


def _unmount_below(root: Path) -> None:
    """Unmount whatever dockerd left mounted under ``root`` (deepest first)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split()[4] for line in handle]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
