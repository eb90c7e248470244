"""What both benchmarks share: timing, tables, machine notes, results files."""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def require_root() -> None:
    """pfs mounts btrfs and dockerd needs root: fail early with a clear message."""
    if os.geteuid() != 0:
        sys.exit(f"{sys.argv[0]}: run as root (pfs mounts btrfs, dockerd needs root)")


def run(args: Sequence[str], cwd: Path | None = None) -> str:
    """Run a command (no shell); its stdout. Raises with stderr when it fails."""
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` took (wall clock)."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def fmt_seconds(seconds: float) -> str:
    """A duration in the unit that reads best."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [str(first).ljust(widths[0])]
        parts += [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _first_line(args: Sequence[str]) -> str:
    if shutil.which(args[0]) is None:
        return "missing"
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine_notes(path_for_fs: Path) -> dict[str, str]:
    """What a reader needs to compare this run with another machine's."""
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for row in handle:
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as handle:
        mem_kib = int(handle.readline().split()[1])
    backing = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(path_for_fs)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "kernel": platform.release(),
        "cpu": f"{cpu} x{os.cpu_count()}",
        "memory": f"{mem_kib / 1024**2:.1f} GiB",
        "state dir file system": backing,
        "python": platform.python_version(),
        "btrfs-progs": _first_line(["btrfs", "--version"]),
        "coreutils": _first_line(["cp", "--version"]),
        "git": _first_line(["git", "--version"]),
        "docker": _first_line(["docker", "--version"]),
        "load average at start": load_average(),
    }


def load_average() -> str:
    """Other work on the machine skews every number here: say how busy it was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} CPUs)"


def print_notes(notes: dict[str, str]) -> None:
    width = max(len(k) for k in notes)
    for key, value in notes.items():
        print(f"  {key.ljust(width)}  {value}")


def write_results(stem: str, data: dict[str, Any]) -> Path:
    """Save a run as bench/results/STEM-TIMESTAMP.json; the path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


class PluginClient:
    """Calls a volume plugin's socket the way Docker does: one kept-alive connection,
    JSON bodies, no Content-Type. (The tests' requests-based client costs about 1 ms more
    per call than the daemon does, which would count against pfs here.)"""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``/METHOD``; the decoded reply."""
        reply: dict[str, Any] = json.loads(self.call_raw(method, body))
        return reply

    def call_raw(self, method: str, body: dict[str, Any]) -> bytes:
        """POST ``/METHOD``; the reply's bytes, all read (decoding a large reply is the
        caller's cost, not the plugin's)."""
        if self._conn is None:
            self._conn = _UnixConnection(self.socket_path)
        self._conn.request("POST", f"/{method}", body=json.dumps(body).encode())
        return self._conn.getresponse().read()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path) -> None:
        super().__init__("localhost", timeout=120)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.socket_path))
        self.sock = sock
