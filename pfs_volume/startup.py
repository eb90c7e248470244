"""The daemon while it starts: what it is doing, and a Docker driver that answers a clear
error until the volume service exists.

Both sockets listen first, before anything slow: Docker marks a managed plugin disabled
when it does not answer within a few seconds, and calls ``Plugin.Activate`` and
``VolumeDriver.List`` at engine start. Pool preparation, start-up recovery and reaching
etcd come after, on a thread of their own. Until the node is ready:

* ``Plugin.Activate`` and ``VolumeDriver.Capabilities`` answer as always (``plugin.app``
  answers them without asking the driver);
* Create, Remove, Mount, Unmount and Path wait for the node to be ready, up to
  ``READY_WAIT``, then fail with ``Starting``: "pfs is starting: <step>" or "pfs cannot
  reach etcd at X: retrying ...". Before the sockets listened first, Docker met a refused
  connection while pfs (re)started and retried for up to 30 s, so a container stopped
  during a restart still had its Unmount, and its commit (DESIGN.md, invariant 4); the
  wait keeps that.
* List and Get fail at once, as Docker calls them at its own start and across every
  driver, and waits for their answer. List: Docker logs a driver's List error and
  ``docker volume ls`` prints it as a warning beside every other driver's volumes, while
  an empty list would say, with no warning, that every pfs volume is gone. Get too:
  Docker ignores a driver's Get error when it looks a name up across drivers, and names
  it when the volume is known to be pfs's, which is what the user needs to read. An
  Unmount refused after the wait leaves its mount record, which the mount reconciler
  releases once the node is ready (DESIGN.md, invariant 9).

A waiting call holds one of the plugin socket's worker threads, so at most
``READY_WAITERS`` calls wait at once (the socket has that many threads more than usual
while starting): one more is refused at once, and the handshake, List and Get always
find a thread free. A start-up that fails, or a stop, ends every wait at once with its
reason, which Docker shows, rather than a connection closed under the call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfs_volume.errors import Starting
from pfs_volume.systemd_notify import notify

if TYPE_CHECKING:
    from pfs_volume.volumes import VolumeInfo, VolumeService

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5
"""Seconds before the first retry of a service start-up needs (etcd)."""
READY_WAIT = 30.0
"""Seconds Create, Remove, Mount, Unmount and Path wait for start-up: Docker's own retry
window for a plugin it cannot reach, and within its one minute for a plugin call."""
READY_WAITERS = 32
"""Calls that wait for start-up at once (each holds a plugin-socket thread): more than
Docker's own boot starts at once for a handful of pfs containers, and bounded, so that
waiting calls cannot take every thread of the socket."""
LONGEST_RETRY = 15.0
"""The longest wait between retries: about a lease TTL, so a node joins soon after etcd
is back, and a dead etcd costs one log line per this many seconds."""


class StartupState:
    """What a starting daemon is doing, readable from any thread; ready at the end.

    Args:
        clock: monotonic seconds (for how long start-up took).
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._began = clock()
        self._lock = threading.Lock()
        self._message = "pfs is starting"
        self._ready = threading.Event()
        self.failure: BaseException | None = None
        """What made start-up fail (the daemon then exits), or None."""
        self.seconds: float | None = None
        """How long start-up took, once ready."""
        self._ended: list[Callable[[], None]] = []

    def step(self, doing: str) -> None:
        """Start-up goes on to ``doing`` ("recovering the commit graph")."""
        log.info("starting: %s", doing)
        with self._lock:
            self._message = f"pfs is starting: {doing}"
        notify(f"STATUS={self._message}")

    def waiting(self, message: str) -> None:
        """Start-up waits for something outside pfs; ``message`` says what and why."""
        log.warning("%s", message)
        with self._lock:
            self._message = message
        notify(f"STATUS={message}")

    def message(self) -> str:
        """What the daemon is doing, as the error a call made too early gets."""
        with self._lock:
            return self._message

    def ready(self) -> None:
        """Start-up is over: every call is served."""
        self.seconds = self._clock() - self._began
        self._ready.set()
        log.info("ready: start-up took %.2f s", self.seconds)
        notify(f"STATUS=ready (start-up took {self.seconds:.2f} s)")

    def is_ready(self) -> bool:
        """True once start-up is over."""
        return self._ready.is_set()

    def fail(self, failure: BaseException) -> None:
        """Start-up failed with ``failure``: the daemon stops and exits with it."""
        self.failure = failure
        with self._lock:
            self._message = f"pfs failed to start: {failure}"
        self._end()

    def stopping(self) -> None:
        """The daemon stops: a start-up still going on will not become ready."""
        with self._lock:
            if not self._ready.is_set() and self.failure is None:
                self._message = f"pfs is stopping ({self._message})"
        self._end()

    def on_end(self, ended: Callable[[], None]) -> None:
        """Call ``ended`` when start-up fails or the daemon stops (each at most once)."""
        self._ended.append(ended)

    def _end(self) -> None:
        for ended in self._ended:
            ended()


class Backoff:
    """Waits between retries: doubling from ``first`` up to ``longest`` seconds."""

    def __init__(self, first: float = FIRST_RETRY, longest: float = LONGEST_RETRY) -> None:
        self._next = first
        self._longest = longest

    def next(self) -> float:
        """The wait before the next retry."""
        wait = self._next
        self._next = min(self._next * 2, self._longest)
        return wait


class PendingDriver:
    """The Docker volume driver (``plugin.Driver``) of a daemon that may still be
    starting: it answers ``Starting`` until the volume service is attached, then hands
    every call to it.

    Args:
        state: the start-up whose message a refused call carries.
        wait: seconds a call that changes something waits for start-up (``READY_WAIT``).
        waiters: how many calls wait at once (``READY_WAITERS``).
    """

    def __init__(
        self, state: StartupState, wait: float = READY_WAIT, waiters: int = READY_WAITERS
    ) -> None:
        self._state = state
        self._wait = wait
        self._volumes: VolumeService | None = None
        self._settled = threading.Event()
        """Set once the service is attached, or start-up failed or was stopped."""
        self._waiters = threading.BoundedSemaphore(waiters)
        self._waiter_count = waiters
        state.on_end(self._settled.set)

    def attach(self, volumes: VolumeService) -> None:
        """The node is ready: serve every call with ``volumes`` from now on."""
        self._volumes = volumes
        self._settled.set()

    def _service(self, call: str = "") -> VolumeService:
        """The volume service; ``call`` (named) waits for it up to the wait, unless as
        many calls wait already as may, or start-up failed or was stopped.

        Raises:
            Starting: the node is not ready (still not, after the wait).
        """
        if call and not self._settled.is_set():
            if not self._waiters.acquire(blocking=False):
                raise Starting(
                    f"{self._state.message()} ({self._waiter_count} calls wait for it already)"
                )
            try:
                log.info("%s waits for start-up (%s)", call, self._state.message())
                self._settled.wait(self._wait)
            finally:
                self._waiters.release()
        volumes = self._volumes
        if volumes is None:
            raise Starting(self._state.message())
        return volumes

    def create(self, name: str, options: Mapping[str, Any]) -> None:
        """VolumeDriver.Create."""
        self._service("Create").create(name, options)

    def remove(self, name: str) -> None:
        """VolumeDriver.Remove."""
        self._service("Remove").remove(name)

    def mount(self, name: str, mount_id: str) -> Path:
        """VolumeDriver.Mount."""
        return self._service("Mount").mount(name, mount_id)

    def unmount(self, name: str, mount_id: str) -> None:
        """VolumeDriver.Unmount."""
        self._service("Unmount").unmount(name, mount_id)

    def unmount_unnamed(self) -> None:
        """VolumeDriver.Unmount with an empty body."""
        self._service("Unmount").unmount_unnamed()

    def path(self, name: str) -> str:
        """VolumeDriver.Path."""
        return self._service("Path").path(name)

    def get(self, name: str) -> VolumeInfo:
        """VolumeDriver.Get."""
        return self._service().get(name)

    def list(self) -> Sequence[VolumeInfo]:
        """VolumeDriver.List."""
        return self._service().list()
