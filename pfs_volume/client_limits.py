"""waitress connections that bound what one client may hold (see ``transport``):
headers within ``HEADER_TIMEOUT``, a body within ``BODY_TIMEOUT``, a body no longer than
its route accepts, and at least ``MIN_TRANSFER_RATE`` bytes/s over ``RATE_WINDOW`` while
the server waits on the client.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer, TcpWSGIServer, UnixWSGIServer
from waitress.utilities import Error

from pfs_volume.errors import InvalidRequest
from pfs_volume.request_limits import DEFAULT_BODY, Refusal, RoutePolicy

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 5
"""Seconds from a request's first byte to the end of its headers. Every client pfs has
(Docker, the CLI, peers) sends its headers in one write; only a slowloris client needs
longer."""
BODY_TIMEOUT = 30
"""Seconds from a request's first byte to the end of its body, on routes that take at
most ``DEFAULT_BODY`` bytes (a JSON body); within Docker's one minute for a call."""
IDLE_TIMEOUT = 60
"""Seconds a connection may send and receive nothing (an idle keep-alive, a stalled
upload) before it is closed. waitress's own default is 120; Docker and the CLI reconnect."""
RATE_WINDOW = 30
"""Seconds over which a client waited on (its response backed up, or its body awaited)
must move ``MIN_TRANSFER_RATE``. waitress counts any byte as activity, so a client taking
a piece of a big download every minute held a worker thread for good; 8 of them
(``THREADS``) took every one. Above the peers' own stall limit
(``cluster.peer.READ_TIMEOUT``): a peer that stops reading has given up already."""
MIN_TRANSFER_RATE = 4096
"""Bytes per second a client waited on must move, averaged over ``RATE_WINDOW``: a
32 kbit/s link, slower than any honest peer's or CLI's; 32 MiB takes more than 2 hours."""
MAX_CHUNK_LINE = 4096
"""Bytes a chunk's size line (with its extensions) may have. waitress bounds neither it
nor the trailer, and joins each piece to what it holds so far: one endless line took the
socket's loop thread, quadratic in its length (20 MB: 45 s) and every byte of it kept."""
MAX_TRAILER = 64 * 1024
"""Bytes the trailer of a chunked body may have (pfs reads no trailer field)."""


class _Refused(Error):
    """waitress's error answer, in the form the app's clients expect (``Refusal``)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.body.decode("utf-8", "replace"))
        self.refusal = refusal
        self.code = refusal.status
        self.reason = HTTPStatus(refusal.status).phrase

    def to_response(  # type: ignore[override]  # waitress sends bytes; its stubs say str
        self, ident: str | None = None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """(status line, headers, body) for waitress's ErrorTask."""
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", self.refusal.content_type)],
            self.refusal.body,
        )


class _LimitedParser(HTTPRequestParser):
    """waitress's request parser, refusing a body longer than its route accepts as soon
    as the headers (Content-Length) or the chunks received so far tell.

    Args:
        adj: waitress's settings. policy: the app's limits and error form.
    """

    def __init__(self, adj: Adjustments, policy: RoutePolicy) -> None:
        super().__init__(adj)
        self.policy = policy
        self.started = time.time()
        self.limit: int | None = None
        self.route = ""

    def received(self, data: bytes) -> int:
        """Take in bytes of the request (waitress's parser), then check the limit.

        Returns:
            How many bytes of ``data`` this request consumed.
        """
        consumed = super().received(data)
        if self.error is not None and not isinstance(self.error, _Refused):
            # waitress's own refusals (a malformed start line, header or chunk, headers
            # too long) in the app's error form, as every other answer of the socket.
            self._refuse_malformed(self.error.body, self.error.code)
        if self.error is not None or not self.headers_finished:
            return consumed
        receiver = self.body_rcv
        if isinstance(receiver, ChunkedReceiver) and (
            len(receiver.control_line) > MAX_CHUNK_LINE or len(receiver.trailer) > MAX_TRAILER
        ):
            self._refuse_malformed(
                f"a chunk size line longer than {MAX_CHUNK_LINE} bytes or a trailer "
                f"longer than {MAX_TRAILER} bytes",
                HTTPStatus.BAD_REQUEST,
            )
            return consumed
        if self.limit is None and (self.chunked or self.content_length > 0):
            path = getattr(self, "path", "/")
            self.limit, self.route = self.policy.body_limit(str(self.command), path)
            if self.content_length > self.limit:
                self._refuse(self.content_length)
        elif (
            self.limit is not None
            and isinstance(receiver, ChunkedReceiver)
            # the body so far (without chunk framing) and the rest of the chunk begun
            and len(receiver) + receiver.chunk_remainder > self.limit
        ):
            self._refuse(None)
        return consumed

    def streamed(self) -> bool:
        """Whether the route takes a streamed body (more than a JSON body)."""
        return self.limit is not None and self.limit > DEFAULT_BODY

    def _refuse(self, size: int | None) -> None:
        assert self.limit is not None
        refusal = self.policy.too_large(self.route, size, self.limit)
        log.info("refused %s: %s", self.route, refusal.body[:300].decode("utf-8", "replace"))
        self._answer(refusal)

    def _refuse_malformed(self, why: str, status: int) -> None:
        error = InvalidRequest(f"the request is not valid HTTP/1.1: {why}")
        log.info("refused a request: %s", error)
        self._answer(self.policy.refusal(error, status))

    def _answer(self, refusal: Refusal) -> None:
        self.error = _Refused(refusal)
        self.completed = True
        # waitress would answer "100 Continue" to a finished request and reopen it.
        self.expect_continue = False


class _BoundedChannel(HTTPChannel):
    """waitress's connection, parsing with the server's route limits and telling the
    server's maintenance when it holds on for too long."""

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Adjustments, map: Any = None):
        super().__init__(server, sock, addr, adj, map)
        self.parser_class = partial(_LimitedParser, policy=server.route_policy)  # type: ignore[assignment]
        self.moved = 0
        """Bytes received and sent on this connection."""
        self._window: tuple[float, int] | None = None  # (its start, self.moved then)
        self._cut = False

    def received(self, data: bytes) -> bool:
        """Take in bytes from the client (waitress), counting them."""
        self.moved += len(data)
        return bool(super().received(data))

    def send(self, data: bytes, do_close: bool = True) -> int:
        """Send what the client takes of ``data`` (waitress), counting it."""
        sent = int(super().send(data, do_close))
        self.moved += sent
        return sent

    def check_client_disconnected(self) -> bool:  # type: ignore[override]
        """Whether the client has gone (waitress puts this in each request's environ as
        ``waitress.client_disconnected``): the loop does not read a connection whose
        request runs, so it is asked of the socket too. A long answer that writes
        rarely (a followed log) asks it to end early."""
        return not self.connected or _hung_up(self.socket)

    def readable(self) -> bool:
        """Whether the loop should wait for bytes from the client (waitress), and
        always once cut: the loop sees the shut socket's end only by reading."""
        return self._cut or bool(super().readable())

    def service(self) -> None:
        """Run the next request (waitress), unless its client hung up while it waited
        for a worker: the loop stops reading a connection whose request is pending, so
        it never sees that end, and each request of a gone client would take a worker
        (150 clients that asked for a big download and left kept the API busy ~30 s)."""
        if _hung_up(self.socket):
            # waitress then skips the request and closes the connection.
            self.connected = False
        super().service()

    def cut(self) -> None:
        """Close this connection from the loop thread, which wakes a worker waiting to
        write to it (ClientDisconnected). waitress's own way (``will_close``) acts only
        once the socket turns writable, which a client that reads nothing never lets
        happen: the worker stayed held until the client left (measured)."""
        self.will_close = self._cut = True
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: closed
            self.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]

    def overdue(self, now: float) -> str | None:
        """Why this connection is held for too long, or None.

        Args:
            now: the time (``time.time()``, as waitress keeps it).
        """
        request = self.request
        if isinstance(request, _LimitedParser) and not request.completed:
            age = now - request.started
            if not request.headers_finished and age > HEADER_TIMEOUT:
                return f"its request's headers took more than {HEADER_TIMEOUT}s"
            if request.headers_finished and not request.streamed() and age > BODY_TIMEOUT:
                return f"its request took more than {BODY_TIMEOUT}s to arrive"
        if self._too_slow(now):
            return f"it moved less than {MIN_TRANSFER_RATE} bytes/s over {RATE_WINDOW}s"
        return None

    def _too_slow(self, now: float) -> bool:
        request = self.request
        reading = request is not None and request.headers_finished and not request.completed
        if not reading and self.total_outbufs_len == 0:
            # Waiting on no one, or on the app: not the client's time.
            self._window = None
            return False
        if self._window is None:
            self._window = (now, self.moved)
            return False
        start, moved = self._window
        if now - start < RATE_WINDOW:
            return False
        self._window = (now, self.moved)
        return self.moved - moved < MIN_TRANSFER_RATE * (now - start)


def _hung_up(sock: Any) -> bool:
    """Whether the other end closed ``sock`` both ways (a client that only stopped
    sending may still wait for its answer)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        events = poller.poll(0)
    except (OSError, ValueError):  # ValueError: closed already
        return True
    return any(flags & (select.POLLHUP | select.POLLERR) for _, flags in events)


class _Bounded(BaseWSGIServer):
    """waitress's server with ``_BoundedChannel`` connections, closing the overdue ones
    at each maintenance (every ``CLEANUP_INTERVAL``), beside waitress's idle ones."""

    channel_class = _BoundedChannel
    route_policy: RoutePolicy
    label = "server"

    def maintenance(self, now: float) -> None:
        """Close connections idle for ``IDLE_TIMEOUT`` (waitress) or ``overdue``."""
        super().maintenance(now)  # type: ignore[arg-type]
        channels: dict[int, Any] = self.active_channels  # type: ignore[assignment]
        for channel in list(channels.values()):
            why = channel.overdue(now) if isinstance(channel, _BoundedChannel) else None
            if why is not None and not channel.will_close:
                log.info("closing a connection to the %s: %s", self.label, why)
                channel.cut()


class BoundedUnixServer(_Bounded, UnixWSGIServer):
    pass


class BoundedTcpServer(_Bounded, TcpWSGIServer):
    pass
