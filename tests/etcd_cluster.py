"""A real etcd cluster for tests and benchmarks: 1 or 3 members from ``/usr/bin/etcd`` on
127.0.0.1, each with its own data dir, ports and log file under a folder the caller
owns, so runs never collide with each other or with an etcd the machine runs.

    cluster = EtcdCluster(tmp_path, members=3).start()
    try:
        client = EtcdClient(cluster.endpoints)
        cluster.kill(0)
        ...
    finally:
        cluster.cleanup()

Members are killed when the thread that started them ends (so a crashed run leaves no
etcd behind): start and restart them from the test's main thread.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ETCD = "/usr/bin/etcd"
START_TIMEOUT = 30.0
"""How long a member (or the whole cluster) may take to report healthy."""
STOP_TIMEOUT = 10.0
HEARTBEAT_MS = 50
ELECTION_MS = 500
"""Fast elections: a killed leader is replaced in about a second instead of etcd's
default ten heartbeats of 100 ms plus a 1 s election timeout."""
_PR_SET_PDEATHSIG = 1


LISTEN_PORTS = range(20000, 32000)
"""Where test servers listen: below the kernel's ephemeral range (32768-60999), from which
every outgoing connection takes its local port. A port the kernel picked with bind(0)
could be taken by such a connection before the server binds it (seen in CI)."""


def worker_ports() -> range:
    """The slice of ``LISTEN_PORTS`` this process picks from: under pytest-xdist each
    worker (``PYTEST_XDIST_WORKER`` gw0, gw1, ...) has its own, so two workers never pick
    the same port between one's check and its server's bind; the whole range otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return LISTEN_PORTS
    index = int(worker[2:]) % count
    size = len(LISTEN_PORTS) // count
    start = LISTEN_PORTS.start + index * size
    return range(start, start + size)


_handed_out: set[int] = set()
"""Ports ``free_port`` gave in this process. None is given twice (until half the slice is
used up): ports picked before any of them is bound, as an etcd cluster's client and peer
ports are, would otherwise collide now and then (seen: a member's client and peer port)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing uses now, outside the ephemeral range (and
    within this xdist worker's slice of it), not given by an earlier call."""
    ports = worker_ports()
    if len(_handed_out) > len(ports) // 2:
        _handed_out.clear()
    for _ in range(200):
        port = random.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on {host} in {ports}")


_LIBC = ctypes.CDLL(None, use_errno=True)
"""Loaded here, not in the child between fork and exec, where loading could block on a
lock another thread of the parent held at the fork."""


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the thread that started it ends (the
    test process's main thread, as pytest runs fixtures there), so a crashed test run
    leaves no etcd behind."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class EtcdCluster:
    """An etcd cluster of ``members`` processes under ``root``.

    Args:
        root: a folder this cluster may fill (member data dirs and logs go there).
        members: how many members (1 or 3 make sense: 2 has no fault tolerance).
    """

    def __init__(self, root: Path, members: int = 3) -> None:
        if members < 1:
            raise ValueError("an etcd cluster needs at least one member")
        self.root = root
        self.token = f"pfs-test-{secrets.token_hex(6)}"
        self.names = [f"m{i}" for i in range(members)]
        self.client_ports = [free_port() for _ in range(members)]
        self.peer_ports = [free_port() for _ in range(members)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * members

    @property
    def endpoints(self) -> list[str]:
        """The members' client URLs, in member order."""
        return [f"http://127.0.0.1:{port}" for port in self.client_ports]

    def data_dir(self, i: int) -> Path:
        return self.root / f"{self.names[i]}.etcd"

    def log_path(self, i: int) -> Path:
        return self.root / f"{self.names[i]}.log"

    def start(self) -> EtcdCluster:
        """Start every member and wait until each reports healthy. Returns self."""
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(len(self.names)):
            self._spawn(i)
        for i in range(len(self.names)):
            self._wait_healthy(i)
        return self

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (no clean shutdown) and reap it."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self.processes[i] = None

    def stop(self, i: int) -> None:
        """Stop member ``i`` with SIGTERM, SIGKILL if it takes too long."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes[i] = None

    def stop_all(self) -> None:
        """Stop every member this cluster started."""
        for i in range(len(self.names)):
            self.stop(i)

    def restart(self, i: int) -> None:
        """Start member ``i`` again (same data dir and ports) and wait for its health."""
        self.stop(i)
        self._spawn(i)
        self._wait_healthy(i)

    def restart_all(self) -> None:
        """Stop every member, start them all again, and wait until each is healthy (a
        member alone has no quorum: all must be started before any can be healthy)."""
        self.stop_all()
        for i in range(len(self.names)):
            self._spawn(i)
        for i in range(len(self.names)):
            self._wait_healthy(i)

    def cleanup(self) -> None:
        """Kill every member this cluster started (by its own process handle only)."""
        for i in range(len(self.names)):
            self.kill(i)

    def healthy(self, i: int) -> bool:
        """True when member ``i`` answers ``/health`` with a leader and a quorum read."""
        url = f"{self.endpoints[i]}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(json.loads(reply.read()).get("health") == "true")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def leader(self, timeout: float = START_TIMEOUT) -> int:
        """The index of the member that leads the cluster now, waiting (up to ``timeout``
        seconds) while there is none, as during an election."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, process in enumerate(self.processes):
                if process is None or process.poll() is not None:
                    continue
                status = self.status(i)
                if status is not None and status["header"]["member_id"] == status["leader"]:
                    return i
            time.sleep(0.05)
        raise RuntimeError(f"the etcd cluster has no leader after {timeout:.0f} s")

    def status(self, i: int) -> dict[str, Any] | None:
        """Member ``i``'s ``/v3/maintenance/status`` reply (its id, its leader's id, its
        raft term and index), or None when it does not answer."""
        request = urllib.request.Request(
            f"{self.endpoints[i]}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                found = json.loads(reply.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def _spawn(self, i: int) -> None:
        name = self.names[i]
        peers = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        client_url = self.endpoints[i]
        peer_url = f"http://127.0.0.1:{self.peer_ports[i]}"
        args = [
            ETCD,
            "--name", name,
            "--data-dir", str(self.data_dir(i)),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", peers,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        log = open(self.log_path(i), "ab")  # noqa: SIM115 - the child owns it
        try:
            self.processes[i] = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def _wait_healthy(self, i: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            process = self.processes[i]
            if process is None or process.poll() is not None:
                raise RuntimeError(
                    f"etcd member {self.names[i]} exited; its log:\n{self._log_tail(i)}"
                )
            if self.healthy(i):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"etcd member {self.names[i]} not healthy after {START_TIMEOUT:.0f} s; its "
            f"log:\n{self._log_tail(i)}"
        )

    def _log_tail(self, i: int, lines: int = 20) -> str:
        try:
            text = self.log_path(i).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
