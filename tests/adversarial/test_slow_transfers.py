"""Attack: clients that take a big response, or send a big body, a little at a time on
a real daemon. Each one is cut once it moves less than ``MIN_TRANSFER_RATE`` over a
``RATE_WINDOW``, so they cannot hold the API's worker threads; the plugin socket answers
throughout.

Measured before the rate rule: waitress counts any byte sent as activity, so a client
reading 512 bytes every few seconds never tripped the write-stall limit, and 8 of them
(``THREADS``) held every API worker for as long as they liked (the API answered nothing);
an upload dripping a byte every half second was never idle, so never cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import requests_unixsocket

from pfs_volume.cli.client import ApiClient
from pfs_volume.client_limits import RATE_WINDOW
from pfs_volume.transport import CLEANUP_INTERVAL, THREADS
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

# Its bounds (cut within the rate window, plugin within 2 s) are timing: run on one
# xdist worker, one after another with the other timing-bound daemon tests.
pytestmark = pytest.mark.xdist_group("timing-daemon")

BIG_FILE = 32 * 1024**2
"""Bytes of the file downloaded: more than waitress buffers (16 MiB), so a worker waits."""
READ_PIECE = 512
READ_INTERVAL = 3.0
"""A slow reader takes ``READ_PIECE`` bytes every ``READ_INTERVAL``: far below the rate."""
DRIP_INTERVAL = 0.5
CUT_BOUND = RATE_WINDOW + 4 * CLEANUP_INTERVAL + 5
"""Seconds by which a slow client must be cut: its window starts at a check after it
backs up, and it is cut at the first check after the window."""
PLUGIN_BOUND = 2.0
PROBE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PfsNode]:
    node = PfsNode(
        tmp_path_factory.mktemp("slowxfer") / "state", plugin_dir=PRIVATE_PLUGIN_DIR
    ).start()
    try:
        client = ApiClient(str(node.api_socket))
        client.request("POST", "/v1/repos", json={"name": "big"})
        zeros = (bytes(1024**2) for _ in range(BIG_FILE // 1024**2))
        client.stream("PUT", "/v1/repos/big/branches/master/files", data=zeros, path="f").close()
        yield node
    finally:
        node.cleanup()


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(str(path))
    return sock


def _api_answers(node: PfsNode) -> bool:
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F") + "/v1/health"
    try:
        with requests_unixsocket.Session() as session:
            return session.get(url, timeout=PROBE_TIMEOUT).status_code == 200
    except requests.RequestException:
        return False


def _closed_by_server(sock: socket.socket, drip: bytes | None) -> bool:
    """Take one piece (or send ``drip``); True once the server has closed."""
    try:
        if drip is not None:
            sock.send(drip)
            return False
        # A reader's queue still holds what was sent before the cut: a blank line
        # (which waitress skips between requests) finds the cut at once.
        sock.send(b"\r\n")
        return sock.recv(READ_PIECE) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_readers_and_uploads_are_cut(daemon: PfsNode) -> None:
    readers = [_connect(daemon.api_socket) for _ in range(THREADS)]
    for sock in readers:
        sock.sendall(b"GET /v1/repos/big/commits/master/tar HTTP/1.1\r\nHost: pfs\r\n\r\n")
        sock.settimeout(1.0)
    uploader = _connect(daemon.api_socket)
    uploader.sendall(
        b"PUT /v1/repos/big/branches/master/files?path=g HTTP/1.1\r\nHost: pfs\r\n"
        b"Content-Length: 10000000\r\n\r\n"
    )
    started = time.monotonic()
    cut: dict[int, float] = {}
    stop = threading.Event()

    def trickle() -> None:
        last_read = 0.0
        while not stop.wait(DRIP_INTERVAL):
            now = time.monotonic()
            if id(uploader) not in cut and _closed_by_server(uploader, b"x"):
                cut[id(uploader)] = now - started
            if now - last_read < READ_INTERVAL:
                continue
            last_read = now
            for sock in readers:
                if id(sock) not in cut and _closed_by_server(sock, None):
                    cut[id(sock)] = now - started

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(2 * CLEANUP_INTERVAL)
        assert not _api_answers(daemon), "the slow readers did not take the API's workers"
        answered_at = None
        while time.monotonic() - started < CUT_BOUND and answered_at is None:
            before = time.monotonic()
            assert daemon.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
            assert time.monotonic() - before < PLUGIN_BOUND
            if _api_answers(daemon):
                answered_at = time.monotonic() - started
        assert answered_at is not None, f"the API answered nothing for {CUT_BOUND}s"
        deadline = started + CUT_BOUND
        while len(cut) < THREADS + 1 and time.monotonic() < deadline:
            time.sleep(CLEANUP_INTERVAL)
        assert len(cut) == THREADS + 1, f"only {len(cut)} slow clients cut in {CUT_BOUND}s"
    finally:
        stop.set()
        thread.join()
        for sock in [*readers, uploader]:
            with contextlib.suppress(OSError):
                sock.close()
    files = daemon.api("GET", "/v1/repos/big/commits/master/files").json()["entries"]
    assert [entry["name"] for entry in files] == ["f"]
