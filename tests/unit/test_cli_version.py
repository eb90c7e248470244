"""``pfs --version``: the CLI's version from the package metadata, and what it can tell
of the daemon at ``--api`` (the daemon's own answers: tests/integration/test_starting.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
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


def answered_by(path: Path, answer: Callable[[socket.socket], None]) -> list[str]:
    """What ``pfs --version`` prints of a server at ``path`` answering with ``answer``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        with contextlib.suppress(OSError):  # the CLI hung up
            answer(conn)
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        return pfs_version("--api", str(path)).stdout.splitlines()
    finally:
        thread.join(timeout=120)
        server.close()


def test_a_server_sending_its_answer_a_byte_at_a_time_is_not_waited_on_for_long(
    tmp_path: Path,
) -> None:
    """HEALTH_TIMEOUT is for the whole answer, not for each byte (it was per read: a
    byte every few seconds held ``--version`` as long as the server liked)."""
    sent: list[int] = []

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b'HTTP/1.1 503 x\r\nConnection: close\r\n\r\n{"version": "1"')
        for _ in range(60):
            conn.sendall(b" ")
            sent.append(1)
            time.sleep(0.5)

    path = tmp_path / "slow.sock"
    lines = answered_by(path, trickle)
    assert lines[1] == (
        f"daemon: not reachable at {path} (TimeoutError: the answer did not end within 5 s)"
    )
    assert len(sent) < 60, "the CLI read on until the server stopped by itself"


def test_what_a_server_answers_is_printed_without_control_characters(tmp_path: Path) -> None:
    """A terminal's escape sequences in the version or message are shown, not run."""

    def hostile(conn: socket.socket) -> None:
        body = b'{"version": "1.0\\u001b]0;owned\\u0007", "error": {"message": "\\u001b[2Jx"}}'
        conn.sendall(b"HTTP/1.1 503 x\r\nConnection: close\r\n\r\n" + body)

    path = tmp_path / "odd.sock"
    assert answered_by(path, hostile)[1] == (f"daemon 1.0\\x1b]0;owned\\x07 at {path} (\\x1b[2Jx)")
