"""Serving a WSGI app on a unix socket with waitress (threads in this one process)."""

from __future__ import annotations

import grp
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from flask import Flask
from waitress.server import create_server

from pfs_volume.errors import Conflict

log = logging.getLogger(__name__)

SOCKET_GROUP = "docker"
"""Members of this group may use the sockets; without it they are root's alone."""
THREADS = 8
CONNECT_PROBE_TIMEOUT = 1.0
STOP_TIMEOUT = 5.0
"""Seconds a stop waits for requests in progress."""


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
        app: the WSGI app.
        path: the socket file; its folder is created, a stale socket is replaced.
        label: a word for log lines ("plugin", "api").
    """

    def __init__(self, app: Flask, path: Path, label: str) -> None:
        self.app = app
        self.path = path
        self.label = label
        self._server: Any = None
        self._thread: threading.Thread | None = None
        # waitress serves every connection in this map; owning it lets ``stop`` close
        # idle keep-alive connections, which would otherwise keep the loop running.
        self._channels: dict[int, Any] = {}

    def start(self) -> None:
        """Bind the socket and start serving.

        Raises:
            Conflict: when another process serves on that socket already.
        """
        if socket_in_use(self.path):
            raise Conflict(f"another process is serving on {self.path} already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        group = _socket_group()
        server = create_server(
            self.app,
            map=self._channels,
            unix_socket=str(self.path),
            unix_socket_perms="660" if group is not None else "600",
            threads=THREADS,
            ident="pfs",
        )
        if group is not None:
            os.chown(self.path, 0, group)
        self._server = server
        self._thread = threading.Thread(target=server.run, name=f"pfs-{self.label}", daemon=True)
        self._thread.start()
        log.info("serving the %s on %s", self.label, self.path)

    def _close_channels(self) -> None:
        for channel in list(self._channels.values()):
            channel.close()

    def stop(self) -> None:
        """Stop accepting, finish the thread and remove the socket file."""
        if self._server is not None:
            # Channels may only be closed on the loop's own thread (else its select()
            # sees a closed descriptor); waitress's trigger runs a function there.
            self._server.trigger.pull_trigger(self._close_channels)
            self._server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT)
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)
        self.path.unlink(missing_ok=True)


def _socket_group() -> int | None:
    try:
        return grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return None
