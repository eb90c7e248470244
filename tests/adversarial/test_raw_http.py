"""Attack: raw HTTP tricks over the real unix sockets of a real daemon. Every request
gets a clear refusal in its socket's error form (plugin ``{"Err": ...}``, API
``{"error": {...}}``) or a clean close, never a 500 or a hang; the store is unchanged,
and both sockets keep serving.

Measured before the fixes: waitress's own refusals (a bad start line, header, chunk or
Content-Length) were text/plain on both sockets, and flask's HTML pages on the plugin
socket's unknown paths and methods; a chunk size line had no bound (20 MB of it took the
API socket's loop thread 45 s, quadratic, and every byte stayed in memory).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs_volume.cli.client import ApiClient
from pfs_volume.client_limits import MAX_CHUNK_LINE
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

# Its module-scoped daemon starts once: every test of the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("raw-http")

ANSWER_WAIT = 3.0
"""Seconds a refusal may take (every one here comes from the headers or the first bytes)."""
MORE_WAIT = 0.3
"""Seconds to wait for a further (pipelined) response once one has come whole."""
PLUGIN_BOUND = 2.0
"""Seconds a plugin call may take while the API socket is attacked (a 2-core box)."""
H = b"Host: pfs\r\n"
CREATE = b"POST /CREATE HTTP/1.1\r\n" + H
"""A request to the socket's create route (``/CREATE`` is replaced per socket)."""
PING = b"GET /PING HTTP/1.1\r\n" + H + b"\r\n"


def _chunked(body: bytes) -> bytes:
    return CREATE + b"Transfer-Encoding: chunked\r\n\r\n" + body


CASES: dict[str, bytes] = {
    "chunked body over the limit": _chunked(b"100001\r\n" + b"a" * 0x100001 + b"\r\n0\r\n\r\n"),
    "one chunk declared over the limit": _chunked(b"100001\r\n" + b"a" * 1000),
    "chunk size line of 100 kB": _chunked(b"f" * 100_000 + b"\r\n"),
    "chunk extension of 100 kB": _chunked(b"5;" + b"x" * 100_000 + b"\r\nhello\r\n0\r\n\r\n"),
    "trailer of 200 kB": _chunked(b"2\r\n{}\r\n0\r\n" + b"X-T: a\r\n" * 25_000 + b"\r\n"),
    "chunk size of 20 hex digits": _chunked(b"f" * 20 + b"\r\n"),
    "chunk size not hex": _chunked(b"zz\r\nab\r\n0\r\n\r\n"),
    "100-continue with an oversize length": CREATE
    + b"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    "a small request then an oversize one": PING + CREATE + b"Content-Length: 99999999\r\n\r\n",
    "an oversize request then a valid one": CREATE + b"Content-Length: 99999999\r\n\r\n" + PING,
    "Content-Length shorter than the body": CREATE + b'Content-Length: 5\r\n\r\n{"name": "a"}',
    "two Content-Length headers": CREATE
    + b'Content-Length: 13\r\nContent-Length: 2\r\n\r\n{"name": "a"}',
    "a negative Content-Length": CREATE + b"Content-Length: -1\r\n\r\n",
    "Transfer-Encoding gzip": CREATE + b"Transfer-Encoding: gzip\r\n\r\n",
    "HTTP/1.0 with no length": b'POST /CREATE HTTP/1.0\r\n\r\n{"name": "a"}',
    "a header block of 8 MB": b"GET /PING HTTP/1.1\r\nX-A: " + b"a" * 8 * 1024**2 + b"\r\n\r\n",
    "10000 headers": b"GET /PING HTTP/1.1\r\n"
    + b"".join(b"X-%d: a\r\n" % i for i in range(10_000))
    + b"\r\n",
    "a URL of 1 MB": b"GET /" + b"a" * 1024**2 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "TRACE": b"TRACE /PING HTTP/1.1\r\n" + H + b"\r\n",
    "CONNECT": b"CONNECT pfs:80 HTTP/1.1\r\n" + H + b"\r\n",
    "an absolute-form URL": b"GET http://evil.example/nope HTTP/1.1\r\n" + H + b"\r\n",
    "a path with ..": b"GET /v1/../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n",
    "a path with %2e%2e": b"GET /v1/repos/%2e%2e/commits/master/files HTTP/1.1\r\n" + H + b"\r\n",
    "a path with %00": b"GET /v1/repos/a%00b HTTP/1.1\r\n" + H + b"\r\n",
    "no start line": b"GARBAGE\r\n\r\n",
    "a header with no colon": b"GET /PING HTTP/1.1\r\nNoColon\r\n\r\n",
    "the HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}
INCOMPLETE: dict[str, bytes] = {
    "Content-Length longer than the body": CREATE + b'Content-Length: 500\r\n\r\n{"name": "a"}',
    "Content-Length and chunked": CREATE
    + b'Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n{"name": "a"}',
}
"""Requests that wait for bytes the client never sends: answered by nothing (the body
timeouts close them), and holding up no one else."""
SOCKETS = {
    "plugin": {b"/CREATE": b"/VolumeDriver.Create", b"/PING": b"/Plugin.Activate"},
    "api": {b"/CREATE": b"/v1/repos", b"/PING": b"/v1/health"},
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PfsNode]:
    node = PfsNode(
        tmp_path_factory.mktemp("rawhttp") / "state", plugin_dir=PRIVATE_PLUGIN_DIR
    ).start()
    try:
        ApiClient(str(node.api_socket)).request("POST", "/v1/repos", json={"name": "kept"})
        yield node
    finally:
        node.cleanup()


def _for(which: str, raw: bytes) -> bytes:
    for placeholder, path in SOCKETS[which].items():
        raw = raw.replace(placeholder, path)
    return raw


def _path(daemon: PfsNode, which: str) -> Path:
    return daemon.plugin_socket if which == "plugin" else daemon.api_socket


def _exchange(path: Path, raw: bytes, wait: float = ANSWER_WAIT) -> tuple[bytes, bool]:
    """Send ``raw`` and read until the server closes or ``wait`` passes.

    Returns:
        (what came back, whether the server closed the connection).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(wait)
    sock.connect(str(path))
    received, closed = b"", False
    with sock:
        # A refusal may come (and the socket close) before the whole request is sent.
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _whole(received):
                sock.settimeout(MORE_WAIT)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
    return received, closed


def _whole(received: bytes) -> bool:
    try:
        return bool(_responses(received))
    except (ValueError, IndexError, StopIteration):
        return False


def _responses(received: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``received`` (all have a Content-Length)."""
    found = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(b":", 1) for line in lines[1:])
        length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
        if len(rest) < length:
            raise ValueError("a response cut short")
        found.append((status, rest[:length]))
        received = rest[length:]
    return found


def _in_error_form(which: str, body: bytes) -> bool:
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    if which == "plugin":
        return isinstance(decoded, dict) and isinstance(decoded.get("Err"), str)
    error = decoded.get("error") if isinstance(decoded, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def _repos(daemon: PfsNode) -> list[str]:
    reply = daemon.api("GET", "/v1/repos")
    assert reply.status_code == 200
    return sorted(repo["name"] for repo in reply.json()["repos"])


def _serving(daemon: PfsNode) -> None:
    started = time.monotonic()
    assert daemon.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert time.monotonic() - started < PLUGIN_BOUND
    assert daemon.api("GET", "/v1/health").status_code == 200


@pytest.mark.parametrize("which", sorted(SOCKETS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_clearly(daemon: PfsNode, which: str, case: str) -> None:
    before = _repos(daemon)
    received, closed = _exchange(_path(daemon, which), _for(which, CASES[case]))
    responses = _responses(received)
    assert responses or closed, f"{case}: no answer and no close within {ANSWER_WAIT}s"
    for status, body in responses:
        assert status != 500, f"{case}: {body!r}"
        if status >= 400:
            assert 400 <= status < 500 or status == 501, f"{case}: {status} {body!r}"
            assert _in_error_form(which, body), f"{case}: {status} {body!r}"
    assert _repos(daemon) == before
    _serving(daemon)


@pytest.mark.parametrize("which", sorted(SOCKETS))
@pytest.mark.parametrize("case", sorted(INCOMPLETE))
def test_incomplete_requests_hold_no_one(daemon: PfsNode, which: str, case: str) -> None:
    before = _repos(daemon)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(_path(daemon, which)))
    with sock:
        sock.sendall(_for(which, INCOMPLETE[case]))
        _serving(daemon)
    assert _repos(daemon) == before


def test_endless_chunk_size_line_is_cut(daemon: PfsNode) -> None:
    """Measured before: 20 MB of chunk size line took the API's loop thread 45 s."""
    head = b"PUT /v1/repos/kept/branches/master/files?path=f HTTP/1.1\r\n" + H
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    received, closed = _exchange(daemon.api_socket, head + b"0" * 4 * 1024**2)
    [(status, body)] = _responses(received)
    assert status == 400 and str(MAX_CHUNK_LINE).encode() in body
    assert closed
    _serving(daemon)
    assert daemon.api("GET", "/v1/repos/kept/commits/master/files").status_code in (200, 404)
