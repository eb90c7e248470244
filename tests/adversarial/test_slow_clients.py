"""Attack: slow and stuck clients on the API socket of a real daemon never starve the
plugin socket Docker calls; bodies too long for their route are refused from the headers,
before they are sent; the node API (TCP) sheds unauthenticated slowloris clients.

Measured before the limits (issue 10): the plugin socket was never starved (its own
server, loop and threads), but 150 slow clients took the API socket whole: waitress's
100 connections were used up and a client sending a byte every half second is never
idle, so the API answered nothing for as long as they kept dripping; and a client that
never reads its response held a worker thread for good.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pfs_volume.api.peer import create_peer_app
from pfs_volume.cli.client import ApiClient
from pfs_volume.client_limits import HEADER_TIMEOUT
from pfs_volume.errors import BodyTooLarge
from pfs_volume.transport import CLEANUP_INTERVAL, TcpServer
from plugin import protocol
from tests.etcd_cluster import free_port
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

# Its bounds (a plugin call within 2 s under attack) are timing: run on one xdist
# worker, one after another with the other timing-bound daemon tests.
pytestmark = pytest.mark.xdist_group("timing-daemon")

ATTACKERS = 150
PLUGIN_BOUND = 2.0
"""Seconds a plugin call may take while the API socket is attacked (a 2-core CI box)."""
PLUGIN_ROUNDS = 5
DRIP_INTERVAL = 0.5
RECOVERY_BOUND = 20.0
"""Seconds the API may take to answer again once the attackers are gone."""
SOCKET_TIMEOUT = 5.0
BIG_FILE = 32 * 1024**2


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PfsNode]:
    """A real daemon with a repo holding one big file (for responses worth not reading)."""
    node = PfsNode(tmp_path_factory.mktemp("slow") / "state", plugin_dir=PRIVATE_PLUGIN_DIR).start()
    try:
        client = ApiClient(str(node.api_socket))
        client.request("POST", "/v1/repos", json={"name": "x"})
        client.request("POST", "/v1/repos", json={"name": "big"})
        reply = client.stream(
            "PUT", "/v1/repos/big/branches/master/files", data=_zeros(BIG_FILE), path="f"
        )
        reply.close()
        yield node
    finally:
        node.cleanup()


def _zeros(size: int) -> Iterator[bytes]:
    for _ in range(size // (1024**2)):
        yield bytes(1024**2)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(SOCKET_TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _slowloris(sock: socket.socket) -> bytes:
    return b"G"  # headers a byte at a time: never complete


def _slow_body(sock: socket.socket) -> bytes:
    sock.sendall(b"POST /v1/repos HTTP/1.1\r\nHost: pfs\r\nContent-Length: 100000\r\n\r\n{")
    return b" "


def _never_reads(sock: socket.socket) -> bytes:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /v1/repos/big/commits/master/tar HTTP/1.1\r\nHost: pfs\r\n\r\n")
    return b""


KINDS: dict[str, Callable[[socket.socket], bytes]] = {
    "slowloris headers": _slowloris,
    "slow body": _slow_body,
    "never reads a big response": _never_reads,
}


@contextmanager
def attackers(path: Path, kind: Callable[[socket.socket], bytes]) -> Iterator[list[socket.socket]]:
    """``ATTACKERS`` connections to ``path`` doing ``kind``, dripping their byte every
    ``DRIP_INTERVAL`` on a thread; all closed on exit."""
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(ATTACKERS):
            sock = _connect(path)
            socks.append(sock)
            drip = kind(sock)
        sock.setblocking(False)

        def dripping() -> None:
            while not stop.wait(DRIP_INTERVAL):
                for one in socks:
                    # OSError: closed by the server, or its buffer is full.
                    with contextlib.suppress(OSError):
                        one.send(drip)

        thread = threading.Thread(target=dripping, daemon=True) if drip else None
        if thread is not None:
            thread.start()
        yield socks
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def plugin_call(node: PfsNode, method: str, body: object) -> float:
    """Seconds one plugin call took; it must answer as Docker expects."""
    started = time.monotonic()
    reply = node._session.post(
        "http+unix://" + str(node.plugin_socket).replace("/", "%2F") + method,
        data=json.dumps(body).encode(),
        timeout=PLUGIN_BOUND * 5,
    )
    took = time.monotonic() - started
    assert reply.status_code == 200 and "Err" not in reply.json(), reply.text
    return took


def api_answers_within(node: PfsNode, bound: float) -> float:
    """Seconds until the API's health answers again (at most ``bound``)."""
    started = time.monotonic()
    while True:
        try:
            if node.api("GET", "/v1/health").status_code == 200:
                took = time.monotonic() - started
                # A call that waited in the queue answers late: it counts.
                assert took < bound, f"the API took {took:.1f}s to answer again"
                return took
        except requests.RequestException:
            pass
        assert time.monotonic() - started < bound, f"the API did not recover in {bound}s"
        time.sleep(0.2)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_plugin_answers_while_the_api_socket_is_flooded(daemon: PfsNode, kind: str) -> None:
    calls = [
        (protocol.LIST, {}),
        (protocol.GET, {"Name": f"{daemon.driver_name}/big"}),
        (protocol.ACTIVATE, {}),
        (protocol.CAPABILITIES, {}),
    ]
    with attackers(daemon.api_socket, KINDS[kind]):
        slowest = max(
            plugin_call(daemon, method, body)
            for _ in range(PLUGIN_ROUNDS)
            for method, body in calls
        )
    assert slowest < PLUGIN_BOUND, f"a plugin call took {slowest:.2f}s under {kind}"
    api_answers_within(daemon, RECOVERY_BOUND)


def test_slow_headers_are_cut_and_the_api_serves_meanwhile(daemon: PfsNode) -> None:
    with attackers(daemon.api_socket, _slowloris) as socks:
        # Fewer attackers than the API's connections: the others are served at once.
        assert daemon.api("GET", "/v1/health").status_code == 200
        deadline = time.monotonic() + HEADER_TIMEOUT + 2 * CLEANUP_INTERVAL + 5
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            time.sleep(0.5)
            open_ = [s for s in open_ if not _closed_by_server(s)]
        assert not open_, f"{len(open_)} slowloris connections outlived HEADER_TIMEOUT"


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.setblocking(False)
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _head_only(path: Path, head: bytes) -> tuple[int, dict[str, object]]:
    """Send only ``head`` (no body) and read the answer: (status, JSON body)."""
    with _connect(path) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or not _whole(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(body)


def _whole(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_body_too_long_is_refused_from_its_headers(daemon: PfsNode) -> None:
    hundred_mb = 100 * 1024**2
    status, body = _head_only(
        daemon.api_socket,
        f"POST /v1/repos HTTP/1.1\r\nHost: pfs\r\nContent-Length: {hundred_mb}\r\n\r\n".encode(),
    )
    assert status == 413
    assert body["error"] == {
        "code": "body_too_large",
        "message": f"the request body of POST /v1/repos is {hundred_mb} bytes long; at most "
        "1048576 bytes are accepted on this route",
    }
    status, body = _head_only(
        daemon.plugin_socket,
        f"POST /VolumeDriver.Mount HTTP/1.1\r\nContent-Length: {hundred_mb}\r\n\r\n".encode(),
    )
    assert status == 413
    assert "POST /VolumeDriver.Mount is 104857600 bytes long; at most 1048576" in str(body["Err"])


def test_a_chunked_body_is_refused_once_it_passes_the_limit(daemon: PfsNode) -> None:
    chunk = b"x" * 65536
    with _connect(daemon.api_socket) as sock:
        sock.sendall(b"POST /v1/repos HTTP/1.1\r\nHost: pfs\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        with pytest.raises(OSError):  # the server stops reading, then closes
            while sent < 100 * 1024**2:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        answer = sock.recv(65536)
    assert sent < 8 * 1024**2, f"{sent} bytes were read before the refusal"
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"is longer than 1048576 bytes" in answer


def test_the_cli_client_shows_the_refusal(daemon: PfsNode) -> None:
    client = ApiClient(str(daemon.api_socket))
    with pytest.raises(BodyTooLarge, match=r"POST /v1/repos is \d+ bytes long; at most 1048576"):
        client.request("POST", "/v1/repos", json={"name": "n", "description": "d" * 2**21})
    assert daemon.api("GET", "/v1/repos/n").status_code == 404


def test_uploads_keep_their_big_limit(daemon: PfsNode) -> None:
    client = ApiClient(str(daemon.api_socket))
    reply = client.stream(
        "PUT", "/v1/repos/x/branches/master/files", data=_zeros(4 * 1024**2), path="four"
    )
    assert reply.status_code == 200 and reply.json()["changed"]


class _NoReplicator:
    """The node API's service, never reached by these tests' requests but one."""

    def fetch(self, repo: str, commit_id: str, source: str) -> list[str]:
        return [source]


def test_the_node_api_sheds_unauthenticated_slowloris_clients(tmp_path: Path) -> None:
    app = create_peer_app(_NoReplicator(), "token")  # type: ignore[arg-type]
    port = free_port()
    server = TcpServer(app, "127.0.0.1", port, "node API")
    server.start()
    socks: list[socket.socket] = []
    try:
        for _ in range(ATTACKERS):  # more than the node API serves at once
            sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
            socks.append(sock)
            sock.sendall(b"G")
        started = time.monotonic()
        url = f"http://127.0.0.1:{port}/v1/peer/repos/r/commits/{'a' * 32}/fetch"
        bound = HEADER_TIMEOUT + 2 * CLEANUP_INTERVAL + 5
        reply = requests.post(
            url, json={"from": "n2"}, headers={"Authorization": "Bearer token"}, timeout=bound
        )
        assert reply.status_code == 200 and reply.json() == {"holders": ["n2"]}
        assert time.monotonic() - started < bound
    finally:
        for sock in socks:
            sock.close()
        server.stop()
