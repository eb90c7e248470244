"""Attack on issue 14's watch-driven repair: a watch stream that stays open but silent.

An etcd member that is frozen (SIGSTOP, a paused VM, a hung disk) or a proxy / load
balancer in front of etcd that stopped relaying keeps the watch's TCP connection open:
the kernel (or the proxy) still answers TCP keepalive probes, so the keepalive never
drops it, and etcd's ``hasleader`` check is never reached. Before the fix the watch
then waited forever: nothing a commit, a node's death or a placement change wrote in the
meantime reached repair until the full sweep (600 s by default; an hour here).

In a live cluster the repair prefix is never quiet (every node rewrites its key at each
lease renewal, every TTL/3), so a watch that heard nothing for several renewals is dead:
repair now ends such a watch as lost and sweeps (``repair.WATCH_SILENCE``), and a
watch request whose endpoint never answers moves on to the next endpoint.

Here a TCP proxy in front of a real etcd plays the frozen member: the repair worker's
watch goes through it, everything else goes straight to etcd.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.cluster import repair
from pfs_volume.cluster.repair import RepairDriver
from pfs_volume.meta.etcd_client import EtcdClient
from tests.etcd_cluster import EtcdCluster
from tests.repair_stubs import Idle, Placed

SILENCE = 3.0
"""The silence limit the test sets (the daemon's is tens of seconds)."""
HEARTBEAT = 0.3
"""How often the test rewrites a node key, as lease renewals do."""
PROMPTLY = 20.0


class FreezableProxy:
    """A TCP relay to ``upstream`` that can be frozen: connections (old and new) stay
    open and accepted, but nothing more is relayed either way."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.sockets.append(conn)
            if self.frozen.is_set():
                continue  # accepted, never answered: a frozen process's backlog
            up = socket.create_connection(self.upstream, timeout=5)
            self.sockets.append(up)
            self._spawn(self._pump, conn, up)
            self._spawn(self._pump, up, conn)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(0.2)
        while not self.closing.is_set():
            if self.frozen.is_set():
                time.sleep(0.1)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            # Frozen between the read and the write: hold the bytes, as a stopped
            # process would.
            while self.frozen.is_set() and not self.closing.is_set():
                time.sleep(0.1)
            try:
                target.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self.threads:
            thread.join(timeout=2)


class _Registry:
    ttl = 1

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix


class _WatchThroughProxy:
    """The driver's etcd client: its watch goes to the proxy first, its reads direct."""

    def __init__(self, client: EtcdClient, proxy: FreezableProxy) -> None:
        self._client = client
        self.endpoints = [proxy.endpoint, *client.endpoints]

    def revision(self) -> int:
        return self._client.revision()


class _Replicator:
    """Counts the sweeps' full passes; records fetches."""

    def __init__(self, registry: _Registry) -> None:
        self.registry = registry
        self.node_id = "n1"
        self.store = None
        self.passes = 0
        self.fetched: list[tuple[str, str]] = []
        self.repos: list[Any] = []

    def repair(self) -> tuple[list[str], list[Any]]:
        self.passes += 1
        return ["n1"], list(self.repos)

    def fetch(self, repo: str, commit: str) -> None:
        self.fetched.append((repo, commit))


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_a_watch_gone_silent_is_replaced_promptly(
    etcd: EtcdCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repair, "WATCH_SILENCE", SILENCE, raising=False)
    client = EtcdClient(etcd.endpoints)
    prefix = f"/att14-{time.monotonic_ns()}"
    port = int(etcd.endpoints[0].rsplit(":", 1)[1])
    proxy = FreezableProxy(("127.0.0.1", port))
    replicator = _Replicator(_Registry(_WatchThroughProxy(client, proxy), prefix))
    driver = RepairDriver(replicator, Idle(), Idle(), sweep_interval=3600)  # type: ignore[arg-type]
    stop = threading.Event()

    def heartbeat() -> None:  # what every node's lease renewal does
        for _ in range(2000):
            if stop.wait(HEARTBEAT):
                return
            with contextlib.suppress(Exception):
                client.put(f"{prefix}/nodes/n1", '{"id": "n1"}')

    beats = threading.Thread(target=heartbeat, daemon=True)
    beats.start()
    driver.start()
    try:
        assert wait_for(lambda: replicator.passes == 1, 10)
        # The watch is up and delivering, through the proxy.
        time.sleep(2 * HEARTBEAT + 1)
        assert replicator.passes == 1
        proxy.frozen.set()
        frozen_at = time.monotonic()
        # A repo placed here, and a commit of it no node pushes: only repair brings it.
        client.put(f"{prefix}/repos/r", '{"name": "r", "replicas": 1, "placement": ["n1"]}')
        replicator.repos = [Placed("r", 1, ("n1",))]
        client.put(f"{prefix}/commits/r/{'a' * 32}", '{"holders": ["n2"]}')
        swept = wait_for(lambda: replicator.passes >= 2, PROMPTLY)
        assert swept, (
            f"the watch went silent {time.monotonic() - frozen_at:.0f} s ago and repair "
            "still waits on it (the next sweep is an hour away)"
        )
        # The new watch is served by an endpoint that answers: a later commit is fetched
        # at once, without another sweep.
        passes = replicator.passes
        client.put(f"{prefix}/commits/r/{'b' * 32}", '{"holders": ["n2"]}')
        assert wait_for(lambda: ("r", "b" * 32) in replicator.fetched, PROMPTLY)
        assert replicator.passes == passes
    finally:
        stop.set()
        driver.stop()
        beats.join(timeout=5)
        proxy.close()
        client.close()
