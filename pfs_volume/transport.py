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

import grp
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from flask import Flask
from waitress.adjustments import Adjustments

from pfs_volume.client_limits import IDLE_TIMEOUT, BoundedTcpServer, BoundedUnixServer
from pfs_volume.errors import Conflict
from pfs_volume.request_limits import RoutePolicy

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
        threads: worker threads (requests served at once); ``set_threads`` changes it.
    """

    def __init__(
        self,
        app: Flask,
        path: Path,
        label: str,
        connections: int = API_CONNECTIONS,
        threads: int = THREADS,
    ) -> None:
        self.app = app
        self.path = path
        self.label = label
        self.connections = connections
        self.threads = threads
        self._policy = RoutePolicy(app)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        # waitress serves every connection in this map; owning it lets the serving
        # thread close idle keep-alive connections, which would keep a loop running.
        self._channels: dict[int, Any] = {}
        self._stopping = threading.Event()

    def _adjustments(self, **more: Any) -> Adjustments:
        return Adjustments(
            threads=self.threads,
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
        server = BoundedUnixServer(self.app, self._channels, adj=adj)
        server.route_policy, server.label = self._policy, self.label
        if group is not None:
            os.chown(self.path, 0, group)
        self._start(server)
        log.info("serving the %s on %s", self.label, self.path)

    def replace_app(self, app: Flask) -> None:
        """Serve ``app`` from the next request on, on connections open already too (the
        daemon's API: a start-up app, then the real one once the node is ready)."""
        self.app = app
        self._policy.follow(app)
        if self._server is not None:
            self._server.application = app
        log.info("the %s now serves %s", self.label, app.name)

    def set_threads(self, threads: int) -> None:
        """Serve ``threads`` requests at once from now on (threads beyond it end as
        soon as their request is answered)."""
        self.threads = threads
        if self._server is not None:
            self._server.task_dispatcher.set_thread_count(threads)

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
            server = BoundedTcpServer(self.app, self._channels, adj=adj, sockinfo=listen)
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


def _socket_group() -> int | None:
    try:
        return grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return None
