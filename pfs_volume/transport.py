"""Serving a WSGI app with waitress (threads in this one process): on a unix socket (the
Docker plugin, the local API) or on a TCP address (the node API for peers).

Each server has its own listening socket, connection map, asyncore loop thread and pool
of worker threads, so no client of one socket can take what another socket's clients
need: a flood of slow API clients leaves the plugin socket, and Docker, untouched. Within
one socket, what a client may hold is bounded:

* connections: ``connections`` per server (waitress stops accepting beyond it; the
  kernel's backlog holds the rest);
* a request's headers must arrive within ``HEADER_TIMEOUT``, a body for a route without
  a streamed body within ``BODY_TIMEOUT``; a connection idle for ``IDLE_TIMEOUT`` is
  closed (slowloris clients);
* a body longer than its route accepts (``pfs_volume.request_limits``) is refused as soon
  as the headers say so or a chunked body passes the limit, never read whole;
* a client that takes its response, or sends its body, slower than
  ``MIN_TRANSFER_RATE`` over a ``RATE_WINDOW`` is cut, which frees the worker thread
  waitress blocks while its output buffer is full (a stall is the slowest rate of all).

Every time limit here is about a client, not about the work a request asks for (a Mount
that waits for a lock answers within Docker's limits by itself: ``repos.LOCK_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import select
import socket
import threading
import time
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Flask
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer, TcpWSGIServer, UnixWSGIServer
from waitress.utilities import Error

from pfs_volume.errors import Conflict, InvalidRequest
from pfs_volume.request_limits import DEFAULT_BODY, Refusal, RoutePolicy

log = logging.getLogger(__name__)

SOCKET_GROUP = "docker"
"""Members of this group may use the sockets; without it they are root's alone."""
THREADS = 8
"""Worker threads per server: requests one socket serves at once (the rest queue)."""
PLUGIN_CONNECTIONS = 128
"""Connections the plugin socket serves at once: Docker opens one per call in flight."""
API_CONNECTIONS = 256
"""Connections the API socket serves at once (CLI calls, scripts, their keep-alives)."""
NODE_CONNECTIONS = 128
"""Connections the node API serves at once: a few streams per peer."""
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
CLEANUP_INTERVAL = 2
"""Seconds between checks of the limits above (a walk over the server's connections)."""
NO_BODY_LIMIT = 2**62
"""waitress's own body limit, set out of the way: ``RoutePolicy`` decides per route."""
CONNECT_PROBE_TIMEOUT = 1.0
STOP_TIMEOUT = 5.0
"""Seconds a stop waits for requests in progress."""
POLL_INTERVAL = 0.2
"""Seconds between checks for a stop; a request never waits for it."""


def socket_in_use(path: Path) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(CONNECT_PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class UnixSocketServer:
    """One flask app on one unix socket, served by waitress on a background thread.

    Args:
        app: the WSGI app (declaring its body limits and error form: ``request_limits``).
        path: the socket file; its folder is created, a stale socket is replaced.
        label: a word for log lines ("plugin", "api").
        connections: the most connections served at once.
    """

    def __init__(
        self, app: Flask, path: Path, label: str, connections: int = API_CONNECTIONS
    ) -> None:
        self.app = app
        self.path = path
        self.label = label
        self.connections = connections
        self._policy = RoutePolicy(app)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        # waitress serves every connection in this map; owning it lets the serving
        # thread close idle keep-alive connections, which would keep a loop running.
        self._channels: dict[int, Any] = {}
        self._stopping = threading.Event()

    def _adjustments(self, **more: Any) -> Adjustments:
        return Adjustments(
            threads=THREADS,
            ident="pfs",
            connection_limit=self.connections,
            channel_timeout=IDLE_TIMEOUT,
            cleanup_interval=CLEANUP_INTERVAL,
            max_request_body_size=NO_BODY_LIMIT,
            **more,
        )

    def start(self) -> None:
        """Bind the socket and start serving.

        Raises:
            Conflict: when another process serves on that socket already.
        """
        if socket_in_use(self.path):
            raise Conflict(f"another process is serving on {self.path} already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        group = _socket_group()
        adj = self._adjustments(
            unix_socket=str(self.path), unix_socket_perms="660" if group is not None else "600"
        )
        server = _BoundedUnixServer(self.app, self._channels, adj=adj)
        server.route_policy, server.label = self._policy, self.label
        if group is not None:
            os.chown(self.path, 0, group)
        self._start(server)
        log.info("serving the %s on %s", self.label, self.path)

    def _start(self, server: Any) -> None:
        self._server = server
        self._thread = threading.Thread(target=self._serve, name=f"pfs-{self.label}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """waitress's loop in short polls, so that this thread alone closes channels."""
        server = self._server
        while not self._stopping.is_set():
            server.asyncore.loop(
                timeout=POLL_INTERVAL,
                map=self._channels,
                use_poll=server.adj.asyncore_use_poll,
                count=1,
            )
        for channel in list(self._channels.values()):
            channel.close()

    def stop(self) -> None:
        """Finish requests in progress, close every connection, remove the socket file."""
        self._stop_serving()
        self.path.unlink(missing_ok=True)

    def _stop_serving(self) -> None:
        if self._server is not None:
            # The loop still runs here: it writes out what those requests answer.
            self._server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)


class TcpServer(UnixSocketServer):
    """One flask app on a TCP host and port (the node API peers call).

    Args:
        app: the WSGI app.
        host: the address to bind (a loopback address in tests).
        port: the port.
        label: a word for log lines.
        connections: the most connections served at once.
    """

    def __init__(
        self, app: Flask, host: str, port: int, label: str, connections: int = NODE_CONNECTIONS
    ) -> None:
        super().__init__(app, Path("/nonexistent"), label, connections)
        self.host = host
        self.port = port

    def start(self) -> None:
        """Bind the address and start serving.

        Raises:
            Conflict: when the address is in use.
        """
        adj = self._adjustments(
            host=self.host,
            port=self.port,
            # Stream frames are 1 MiB: above waitress's default overflow (1 MiB) every
            # byte would pass through a temp file (measured: 40% of the sender's CPU).
            # Memory stays bounded by the high-water mark per connection.
            outbuf_overflow=64 * 1024 * 1024,
        )
        try:
            listen: Any = adj.listen[0]  # (family, type, proto, address); stubs say str
            server = _BoundedTcpServer(self.app, self._channels, adj=adj, sockinfo=listen)
        except OSError as exc:
            raise Conflict(
                f"cannot serve the {self.label} on {self.host}:{self.port}: {exc}"
            ) from None
        server.route_policy, server.label = self._policy, self.label
        self._start(server)
        log.info("serving the %s on http://%s:%d", self.label, self.host, self.port)

    def stop(self) -> None:
        """Finish requests in progress and close every connection."""
        self._stop_serving()


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


class _BoundedUnixServer(_Bounded, UnixWSGIServer):
    pass


class _BoundedTcpServer(_Bounded, TcpWSGIServer):
    pass


def _socket_group() -> int | None:
    try:
        return grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return None
