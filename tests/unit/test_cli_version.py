"""``pfs --version``: the CLI's version from the package metadata, and what it can tell
of the daemon at ``--api`` (the daemon's own answers: tests/integration/test_starting.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from importlib.metadata import version
from pathlib import Path

from tests.pfs_node import PFS


def pfs_version(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PFS, *args, "--version"], capture_output=True, text=True, timeout=60, check=False
    )


def test_no_daemon_still_prints_the_cli_version_and_exits_0(tmp_path: Path) -> None:
    gone = tmp_path / "api.sock"
    done = pfs_version("--api", str(gone))
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        f"pfs {version('pfs')} (CLI)",
        f"daemon: not reachable at {gone} (FileNotFoundError: [Errno 2] No such file or directory)",
    ]


def test_the_daemon_named_by_pfs_api_is_asked(tmp_path: Path) -> None:
    """PFS_API counts when --api is not given; an answer without a version is said so."""
    path = tmp_path / "odd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        done = subprocess.run(
            [PFS, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PFS_API": str(path)},
        )
    finally:
        thread.join(timeout=30)
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == f"daemon: at {path}, answered 200 without a version"
