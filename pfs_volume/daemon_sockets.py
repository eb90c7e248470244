"""A daemon's first moments: the state dir's lock and both sockets, up before anything
slow is imported or done.

Docker marks a managed plugin disabled when it does not answer within a few seconds,
and importing the services alone takes most of a second on a quiet machine (several on
a busy one). So ``pfs serve`` opens these first, with only flask, waitress and the
plugin protocol imported, and imports the daemon behind them: Docker's handshake is
answered while the rest loads (``pfs_volume.startup`` says what is answered meanwhile).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from pfs_volume.api.starting import create_starting_app
from pfs_volume.config import Settings
from pfs_volume.errors import Conflict
from pfs_volume.startup import READY_WAITERS, PendingDriver, StartupState
from pfs_volume.systemd_notify import notify
from pfs_volume.transport import (
    API_CONNECTIONS,
    PLUGIN_CONNECTIONS,
    THREADS,
    UnixSocketServer,
    socket_in_use,
)
from plugin import create_plugin_app

if TYPE_CHECKING:
    from flask import Flask

    from pfs_volume.volumes import VolumeService

log = logging.getLogger(__name__)

LOCK_NAME = "daemon.lock"
SCOPE = "local"
"""``pfs_volume.volumes.SCOPE``, spelled out: importing the volume service here would
cost what this module saves (a unit test holds them equal)."""


def stop_on_signals(stopping: threading.Event) -> None:
    """Set ``stopping`` on SIGTERM and SIGINT (from the main thread only). ``pfs serve``
    does this before its sockets open: a signal while the daemon is still imported (a
    second or more) would otherwise kill it as it stands, leaving both socket files,
    and, once start-up began, the pool mounted."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


class Sockets:
    """The state dir's lock and the daemon's two sockets, served before it is ready.

    Args:
        settings: where the state dir and the sockets are.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.startup = StartupState()
        self.driver = PendingDriver(self.startup)
        """Docker's driver: answers "starting" until the volume service is attached."""
        self.api: UnixSocketServer | None = None
        """The API socket: its app is replaced by the real one once the node is ready."""
        self.plugin: UnixSocketServer | None = None
        """The plugin socket: more threads while starting (``startup.READY_WAITERS``)."""
        self._servers: list[UnixSocketServer] = []
        self._lock_file: IO[str] | None = None

    @property
    def is_open(self) -> bool:
        """True once ``open`` succeeded (and until ``close``)."""
        return self.api is not None

    def open(self) -> Sockets:
        """Lock the state dir, then serve both sockets; tell systemd pfs is up.

        Raises:
            Conflict: another daemon holds the state dir, or serves on a socket.
        """
        settings = self.settings
        self._lock_state_dir()
        try:
            for path in (settings.plugin_socket, settings.api_socket):
                if socket_in_use(path):
                    raise Conflict(f"another process is serving on {path} already")
            # A thread for each call that may wait for start-up, and the usual ones for
            # every other call (the handshake, List, Get): waits never take them all.
            self.plugin = self._serve(
                create_plugin_app(self.driver, scope=SCOPE),
                settings.plugin_socket,
                "Docker volume plugin",
                PLUGIN_CONNECTIONS,
                THREADS + READY_WAITERS,
            )
            self.api = self._serve(
                create_starting_app(self.startup.message),
                settings.api_socket,
                "pfs API",
                API_CONNECTIONS,
            )
        except BaseException:
            self.stop_serving()
            self.unlock()
            raise
        notify("READY=1", f"MAINPID={os.getpid()}")
        return self

    def serve_ready(self, volumes: VolumeService, api: Flask) -> None:
        """The node is ready: Docker's calls go to ``volumes`` (first: a healthy API
        promises that volume calls work too), the API socket serves ``api``, and the
        plugin socket's threads for waiting calls end."""
        self.driver.attach(volumes)
        if self.api is not None:
            self.api.replace_app(api)
        if self.plugin is not None:
            self.plugin.set_threads(THREADS)

    def _serve(
        self, app: object, path: Path, label: str, connections: int, threads: int = THREADS
    ) -> UnixSocketServer:
        """Serve ``app`` on the unix socket ``path``: its own loop, threads and
        connection limit, so that no client of one socket starves another's."""
        server = UnixSocketServer(app, path, label, connections, threads)  # type: ignore[arg-type]
        server.start()
        self._servers.append(server)
        return server

    def stop_serving(self) -> None:
        """Finish requests in progress and remove both sockets."""
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        self.api = self.plugin = None

    def unlock(self) -> None:
        """Let another daemon have the state dir (last of all, after the pool)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _lock_state_dir(self) -> None:
        state_dir = self.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise Conflict(
                f"another pfs daemon (pid {holder}) is using the state dir {state_dir}; "
                "stop it first or give another --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
