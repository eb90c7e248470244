"""HTTP/1.1 to the daemon on a plain socket: its unix socket, or TCP for an ``http://``
address.

The CLI uses neither requests (the daemon does, to reach peers and etcd) nor
``http.client``: every ``pfs`` verb is a new process, and importing requests cost about
70 ms, ``http.client`` (with the ``email`` parser and ``ssl`` it imports) still 15 to
20, of a 60 ms budget for a whole one-call verb. What the CLI needs is small: one request
per connection (``Connection: close``; a unix socket connects in microseconds, and a
half-read stream never blocks the next call) with a query and a body (bytes, or a file
or an iterable of chunks sent chunked when its length is unknown), the status, and the
body read whole or streamed, de-chunked.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
from collections.abc import Iterable, Iterator

from pfs_volume.errors import AnswerCutOff

UPLOAD_BLOCK = 1024**2
"""Bytes read from a file body per send."""
MAX_HEAD = 64 * 1024
"""Bytes an answer's status line and headers may take."""


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
"""The bytes RFC 3986 leaves as they are in a URL (urllib.parse's "always safe")."""


def percent_encode(value: str | bytes | int) -> str:
    """``value`` (a text's UTF-8 bytes) with every byte but the unreserved ones as ``%XX``:
    ``urllib.parse.quote(value, safe="")``, for path parts and query fields (a unit test
    holds them equal). Not urllib.parse itself: it imports ``ipaddress``, and the two
    cost a short-lived CLI process a few milliseconds (bench/cli_startup.py).

    Raises:
        UnicodeEncodeError: a text that is not valid Unicode (as urllib.parse's).
    """
    raw = value if isinstance(value, bytes) else str(value).encode()
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in raw)


def query_string(fields: list[tuple[str, str | bytes | int]]) -> str:
    """A query of ``fields`` as HTML forms send it (a space as ``+``): what
    ``urllib.parse.urlencode`` gives (a unit test holds them equal)."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}".replace("%20", "+") for k, v in fields
    )


class _NotHttp(ConnectionError):
    """What answered does not speak HTTP/1.1 as the daemon does."""


TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from typing import IO, Any

    Body = bytes | IO[bytes] | Iterable[bytes] | None


class Answer:
    """A response of the daemon, open until its body is read or ``close`` is called.

    ``raw`` is the body as a binary file (de-chunked); the rest mirrors what the CLI
    used of a requests ``Response``.
    """

    def __init__(self, sock: socket.socket, head: io.BufferedReader) -> None:
        self._sock = sock
        self._head = head
        self.status_code, self.reason, self.headers = _read_head(head)
        self.raw = io.BufferedReader(_BodyReader(head, self.headers), UPLOAD_BLOCK)
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        """The whole body (read on first use; the connection is closed then)."""
        if self._content is None:
            try:
                self._content = self.raw.read()
            finally:
                self.close()
        return self._content

    def json(self) -> Any:
        """The body decoded from JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.content)

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        """The body in pieces of at most ``chunk_size`` bytes, as they arrive."""
        try:
            while chunk := self.raw.read1(chunk_size):
                yield chunk
        finally:
            self.close()

    def iter_lines(self) -> Iterator[bytes]:
        """The body's lines without their ends (``\\n``, ``\\r\\n`` or ``\\r``), each as
        soon as it is complete."""
        try:
            while line := self.raw.readline():
                yield from line.splitlines()
        finally:
            self.close()

    def close(self) -> None:
        """Drop the rest of the body and the connection (the socket's file holds it
        open until it is closed too)."""
        self.raw.close()
        self._head.close()
        self._sock.close()

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _BodyReader(io.RawIOBase):
    """An answer's body: ``Content-Length`` bytes, the chunks of a chunked one, or all
    until the daemon closes."""

    def __init__(self, stream: io.BufferedReader, headers: dict[str, str]) -> None:
        self._stream = stream
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = None if self._chunked or length is None else int(length)
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with what comes next of the body; 0 at its end.

        Raises:
            AnswerCutOff: the body stops before its length, a chunk is malformed, or a
                read fails (the connection dropped, a timeout).
        """
        try:
            return self._readinto(buffer)
        except AnswerCutOff:
            raise
        except OSError as exc:
            raise AnswerCutOff(f"{exc.__class__.__name__}: {exc}") from exc

    def _readinto(self, buffer: Any) -> int:
        if self._done:
            return 0
        if self._chunked and not self._left:
            self._left = self._next_chunk()
            if self._left == 0:
                self._done = True
                return 0
        want = len(buffer) if self._left is None else min(len(buffer), self._left)
        data = self._stream.read1(want)
        if not data:
            if self._left is not None:
                raise AnswerCutOff("the answer ended before its body did")
            self._done = True
            return 0
        buffer[: len(data)] = data
        if self._left is not None:
            self._left -= len(data)
            if self._left == 0 and not self._chunked:
                self._done = True
            elif self._left == 0:
                self._stream.readline()  # the CRLF after a chunk's data
        return len(data)

    def _next_chunk(self) -> int:
        """The size of the next chunk (0: the last; its trailer is skipped)."""
        line = self._stream.readline(MAX_HEAD)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise AnswerCutOff(f"malformed chunk size {line[:40]!r}") from None
        if size == 0:
            while self._stream.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                pass
        return size


def _read_head(stream: io.BufferedReader) -> tuple[int, str, dict[str, str]]:
    """An answer's status, reason and headers (names in lower case).

    Raises:
        _NotHttp: the answer does not start with an HTTP/1.x status line and headers.
    """
    status_line = stream.readline(MAX_HEAD)
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _NotHttp(f"not an HTTP answer: {status_line[:40]!r}")
    headers: dict[str, str] = {}
    size = len(status_line)
    while (line := stream.readline(MAX_HEAD)) not in (b"\r\n", b"\n"):
        size += len(line)
        if not line or size > MAX_HEAD:
            raise _NotHttp("the answer's headers are cut short or too long")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _connect(address: str, timeout: float) -> tuple[socket.socket, str, str]:
    """A socket connected to the daemon at ``address``, the Host header and the path
    prefix of its routes: ``address`` a unix socket path or an
    ``http(s)://host[:port][/path]`` URL."""
    if not address.startswith(("http://", "https://")):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock, "localhost", ""
    from urllib.parse import urlsplit  # here: an http:// API is the rare case

    url = urlsplit(address)
    port = url.port or (443 if url.scheme == "https" else 80)
    sock = socket.create_connection((url.hostname or "localhost", port), timeout=timeout)
    if url.scheme == "https":
        import ssl  # only here: importing it costs a few ms every other verb would pay

        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
    return sock, url.netloc, url.path.rstrip("/")


def send(
    address: str,
    method: str,
    route: str,
    query: dict[str, Any],
    body: Body,
    headers: dict[str, str],
    timeout: float,
) -> Answer:
    """Send one request on a new connection; the open answer once its head arrived.

    Args:
        address: a unix socket path or an ``http://`` URL.
        route: the path, already quoted.
        query: the query's fields (str, bytes or int values; None ones left out).
        body: bytes, a file, or an iterable of chunks (sent chunked when the length is
            not known: a pipe, a generator).
        timeout: seconds for the connect and for each read or write.
    Raises:
        OSError: the daemon could not be reached or stopped answering (``TimeoutError``
            for a timeout, ``_NotHttp`` when what answered is not an HTTP server).
    """
    sock, host, prefix = _connect(address, timeout)
    try:
        fields = [(k, v) for k, v in query.items() if v is not None]
        target = prefix + route + (f"?{query_string(fields)}" if fields else "")
        length = _length(body)
        head = {"Host": host, "Accept": "*/*", "Connection": "close", **headers}
        if length is not None and (body is not None or method not in ("GET", "HEAD")):
            head["Content-Length"] = str(length)
        elif length is None:
            head["Transfer-Encoding"] = "chunked"
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
        refused: OSError | None = None
        try:
            request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if isinstance(body, bytes | bytearray):
                sock.sendall(request + body)  # one write for a small call
            else:
                sock.sendall(request)
                _send_body(sock, body, chunked=length is None)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon may answer (413: too long) and close before reading all of a
            # body: its answer is what to report, when it can be read.
            refused = exc
        try:
            return Answer(sock, sock.makefile("rb"))
        except OSError:
            if refused is not None:
                raise refused from None
            raise
    except BaseException:
        sock.close()
        raise


def _send_body(sock: socket.socket, body: Body, chunked: bool) -> None:
    """Send a request's body read from a file or an iterable, framed as chunks when
    ``chunked``."""
    if body is None or isinstance(body, bytes | bytearray):
        return
    if hasattr(body, "read"):
        pieces: Iterable[bytes] = iter(lambda: body.read(UPLOAD_BLOCK), b"")
    else:
        pieces = body
    for piece in pieces:
        if piece:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


def _length(body: Body) -> int | None:
    """The byte length of a body when it is known without reading it (bytes, a regular
    file); None for a stream (then it is sent chunked)."""
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray):
        return len(body)
    fileno, tell = getattr(body, "fileno", None), getattr(body, "tell", None)
    if fileno is None or tell is None:
        return None
    try:
        status = os.fstat(fileno())
        if stat.S_ISREG(status.st_mode):
            return max(status.st_size - int(tell()), 0)
    except (OSError, ValueError):
        pass
    return None
