"""The CLI's HTTP/1.1 connection (``pfs_volume/cli/connection.py``) and ``ApiClient``'s
transport against a scripted server on a unix socket: framing both ways, errors,
timeouts, a daemon that is not there (what a verb imports: test_cli_imports.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.cli.client import ApiClient
from pfs_volume.cli.connection import percent_encode, query_string
from pfs_volume.config import DEFAULT_API_SOCKET
from pfs_volume.errors import BodyTooLarge, NotFound, PfsError
from tests.scripted_server import Script, ScriptedServer, answer_with, json_answer


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(tmp_path / f"api{len(servers)}.sock", script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_json_answer_is_decoded(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(answer_with(json_answer(200, {"repos": [{"name": "a"}]})))
    assert ApiClient(str(server.path)).request("GET", "/v1/repos") == {"repos": [{"name": "a"}]}


def test_the_query_and_a_json_body_go_out_as_requests_sent_them(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    got: list[bytes] = []

    def script(conn: socket.socket, head: bytes) -> None:
        got.append(head)
        conn.sendall(json_answer(200, {}))

    server = serve(script)
    client = ApiClient(str(server.path))
    client.request("POST", "/v1/x", json={"name": "n"}, path=b"a b/\xff", limit=3, gone=None)
    request = got[0]
    assert request.startswith(b"POST /v1/x?path=a+b%2F%FF&limit=3 HTTP/1.1\r\n")
    assert b"Content-Type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"name": "n"}')


def test_a_chunked_answer_is_reassembled(serve: Callable[[Script], ScriptedServer]) -> None:
    chunks = b"4\r\nab\nc\r\n3;ext=1\r\nd\re\r\n2\r\n\nf\r\n0\r\nTrailer: x\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    server = serve(answer_with(raw))
    client = ApiClient(str(server.path))
    assert b"".join(client.stream("GET", "/v1/c").iter_content(2)) == b"ab\ncd\re\nf"
    assert list(client.stream("GET", "/v1/c").iter_lines()) == [b"ab", b"cd", b"e", b"f"]
    assert client.stream("GET", "/v1/c").raw.read() == b"ab\ncd\re\nf"


def test_a_chunked_answer_dribbled_byte_by_byte_is_reassembled(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab\ncd\r\n0\r\n\r\n"

    def script(conn: socket.socket, head: bytes) -> None:
        for byte in raw:
            conn.sendall(bytes([byte]))

    server = serve(script)
    answer = ApiClient(str(server.path)).stream("GET", "/v1/c")
    assert list(answer.iter_lines()) == [b"ab", b"cd"]


def test_an_answer_without_length_ends_when_the_daemon_closes(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(answer_with(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100_000))
    assert ApiClient(str(server.path)).stream("GET", "/v1/c").content == b"x" * 100_000


def test_an_answer_cut_short_is_an_error(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    with pytest.raises(OSError, match="ended before its body"):
        ApiClient(str(server.path)).stream("GET", "/v1/c").content  # noqa: B018


def test_an_error_answer_is_decoded_by_errors_error_from_response(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    body = {"error": {"code": "not_found", "message": "no repo x"}}
    server = serve(answer_with(json_answer(404, body)))
    client = ApiClient(str(server.path))
    with pytest.raises(NotFound, match="no repo x"):
        client.request("GET", "/v1/repos/x")
    with pytest.raises(NotFound, match="no repo x"):
        client.stream("GET", "/v1/repos/x/export")


def test_an_answer_that_is_not_json_says_so(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(answer_with(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\nno"))
    with pytest.raises(PfsError, match=r"answered 502 without JSON"):
        ApiClient(str(server.path)).request("GET", "/v1/repos")


def test_what_does_not_speak_http_cannot_be_reached(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(answer_with(b"SSH-2.0-OpenSSH\r\n"))
    with pytest.raises(PfsError, match=r"cannot reach the pfs daemon .* \(ConnectionError\)"):
        ApiClient(str(server.path)).request("GET", "/v1/repos")


def test_a_daemon_that_is_not_there(tmp_path: Path) -> None:
    client = ApiClient(str(tmp_path / "none.sock"))
    with pytest.raises(PfsError, match=r"cannot reach the pfs daemon at .*none\.sock "):
        client.request("GET", "/v1/repos")
    with pytest.raises(PfsError, match=r"\(ConnectionError\)$"):
        client.stream("GET", "/v1/repos")


def test_a_silent_daemon_times_out(serve: Callable[[Script], ScriptedServer]) -> None:
    stop = threading.Event()
    server = serve(lambda conn, head: stop.wait(5))
    try:
        with pytest.raises(PfsError, match=r"\(ReadTimeout\)"):
            ApiClient(str(server.path)).stream("GET", "/v1/jobs/j/logs", timeout=0.2)
    finally:
        stop.set()


def test_a_streamed_body_goes_out_chunked(serve: Callable[[Script], ScriptedServer]) -> None:
    got: list[bytes] = []

    def script(conn: socket.socket, head: bytes) -> None:
        data = head
        while not data.endswith(b"0\r\n\r\n"):
            data += conn.recv(65536)
        got.append(data)
        conn.sendall(json_answer(200, {"changed": True}))

    server = serve(script)
    client = ApiClient(str(server.path))
    answer = client.stream("PUT", "/v1/f", data=iter([b"ab", b"", b"cde"]), path="p")
    assert answer.json() == {"changed": True}
    assert b"Transfer-Encoding: chunked\r\n" in got[0]
    assert got[0].endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")


def test_a_regular_file_goes_out_with_its_length(
    serve: Callable[[Script], ScriptedServer], tmp_path: Path
) -> None:
    got: list[bytes] = []

    def script(conn: socket.socket, head: bytes) -> None:
        data = head
        while not data.endswith(b"0123456789"):
            data += conn.recv(65536)
        got.append(data)
        conn.sendall(json_answer(200, {}))

    source = tmp_path / "f"
    source.write_bytes(b"xx0123456789")
    server = serve(script)
    with open(source, "rb") as handle:
        handle.read(2)
        ApiClient(str(server.path)).stream("PUT", "/v1/f", data=handle).close()
    assert b"Content-Length: 10\r\n" in got[0] and b"chunked" not in got[0]


def test_an_early_refusal_of_a_long_body_is_reported(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    body = {"error": {"code": "body_too_large", "message": "too long"}}
    server = serve(answer_with(json_answer(413, body)))
    zeros = (bytes(1024**2) for _ in range(32))
    with pytest.raises(BodyTooLarge, match="too long"):
        ApiClient(str(server.path)).stream("PUT", "/v1/f", data=zeros)


def test_the_cli_default_socket_is_the_daemons() -> None:
    from pfs_volume.cli.main import DEFAULT_API

    assert str(DEFAULT_API_SOCKET) == DEFAULT_API


def test_the_cli_version_is_the_installed_packages() -> None:
    from importlib.metadata import version

    from pfs_volume import __version__

    assert version("pfs") == __version__


def test_an_http_address_is_reached_over_tcp_with_its_path(tmp_path: Path) -> None:
    got: list[bytes] = []

    def script(conn: socket.socket, head: bytes) -> None:
        got.append(head)
        conn.sendall(json_answer(200, {"nodes": []}))

    server = ScriptedServer(None, script)
    try:
        assert ApiClient(str(server.path)).list_nodes() == []
    finally:
        server.close()
    assert got[0].startswith(b"GET /pre/v1/nodes HTTP/1.1\r\nHost: 127.0.0.1:")


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary(), st.integers()))
def test_percent_encoding_is_urllib_quote_without_safe_characters(value: str | bytes | int) -> None:
    from urllib.parse import quote, unquote_to_bytes

    try:
        expected = quote(value if isinstance(value, str | bytes) else str(value), safe="")
    except UnicodeEncodeError:  # a lone surrogate: both refuse it
        with pytest.raises(UnicodeEncodeError):
            percent_encode(value)
        return
    assert percent_encode(value) == expected
    raw = value if isinstance(value, bytes) else str(value).encode()
    assert unquote_to_bytes(percent_encode(value)) == raw


@settings(max_examples=300)
@given(st.lists(st.tuples(st.text(), st.one_of(st.text(), st.binary(), st.integers()))))
def test_a_query_is_urlencode_s(fields: list[tuple[str, str | bytes | int]]) -> None:
    from urllib.parse import urlencode

    try:
        expected = urlencode(fields)
    except UnicodeEncodeError:  # a lone surrogate: both refuse it
        with pytest.raises(UnicodeEncodeError):
            query_string(fields)
        return
    assert query_string(fields) == expected
