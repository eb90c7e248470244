"""Cluster membership: each node registers under an etcd lease and keeps it alive.

A node's key ``{prefix}/nodes/<id>`` holds its API address and pool space and is bound
to its lease, so a node that stops renewing (crashed, paused, cut off) drops out of the
list within the lease TTL, and every write lock it held goes with it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pfs_volume.errors import Conflict, LeaseLost, PfsError
from pfs_volume.meta import rfc3339, utcnow
from pfs_volume.meta.etcd_client import EtcdClient

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 10
"""Seconds a node stays listed after its last renewal (DESIGN.md: ~10 s)."""
RENEWALS_PER_TTL = 3
"""Renew at TTL/3: one renewal can fail and the next still lands in time."""


@dataclass(frozen=True)
class NodeInfo:
    """A live node as it registered itself."""

    id: str
    address: str
    started: datetime
    free_bytes: int
    pool_bytes: int
    state: str = "up"


PoolSpace = Callable[[], tuple[int, int]]
"""Returns (free bytes, total bytes) of the node's pool."""


class NodeRegistry:
    """This node's registration, and the list of live nodes.

    Args:
        client: the etcd client.
        node_id: this node's id.
        address: the node API's URL its peers use (``--advertise``).
        space: returns the pool's free and total bytes.
        ttl: the lease TTL in seconds.
        prefix: the cluster's etcd key prefix.
    """

    def __init__(
        self,
        client: EtcdClient,
        node_id: str,
        address: str,
        space: PoolSpace,
        ttl: int = DEFAULT_LEASE_TTL,
        prefix: str = "/pfs",
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.address = address
        self.space = space
        self.ttl = ttl
        self.prefix = prefix
        self.started = utcnow()
        self._lease: int | None = None
        self._lease_guard = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_lease_lost: list[Callable[[], None]] = []

    def node_key(self, node_id: str) -> str:
        """The key a node registers under."""
        return f"{self.prefix}/nodes/{node_id}"

    def on_lease_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when this node's lease expired and a new one was taken."""
        self._on_lease_lost.append(callback)

    @property
    def lease(self) -> int:
        """This node's current lease id.

        Raises:
            Unavailable: the node is not registered (etcd unreachable since start).
        """
        with self._lease_guard:
            if self._lease is None:
                self._lease = self._register()
            return self._lease

    def start(self) -> None:
        """Register (refusing a live node with the same id) and keep the lease alive.

        Raises:
            Conflict: another live node uses this id. Unavailable: etcd is unreachable.
        """
        existing = self.client.get(self.node_key(self.node_id))
        if existing is not None:
            other = json.loads(existing.value)
            if other.get("address") != self.address:
                raise Conflict(
                    f"node id {self.node_id!r} is registered already by a live node at "
                    f"{other.get('address')}; give each node its own --node-id"
                )
        _ = self.lease
        self._thread = threading.Thread(target=self._renew, name="pfs-lease", daemon=True)
        self._thread.start()
        log.info("node=%s registered at %s (lease TTL %d s)", self.node_id, self.address, self.ttl)

    def _register(self) -> int:
        lease = self.client.grant_lease(self.ttl)
        self._put(lease)
        return lease

    def _put(self, lease: int) -> None:
        free, total = self.space()
        record = {
            "id": self.node_id,
            "address": self.address,
            "started": rfc3339(self.started),
            "free_bytes": free,
            "pool_bytes": total,
        }
        self.client.put(self.node_key(self.node_id), json.dumps(record), lease=lease)

    def _renew(self) -> None:
        interval = self.ttl / RENEWALS_PER_TTL
        while not self._stopping.wait(interval):
            try:
                self._renew_once()
            except PfsError as exc:
                log.warning("node=%s lease renewal failed, retrying: %s", self.node_id, exc)

    def _renew_once(self) -> None:
        with self._lease_guard:
            lease = self._lease
        if lease is None:
            with self._lease_guard:
                self._lease = self._register()
            return
        try:
            self.client.refresh_lease(lease)
            self._put(lease)
        except LeaseLost:
            log.warning(
                "node=%s lease %x expired (paused or cut off for over %d s): registering "
                "anew; write locks it held are lost",
                self.node_id,
                lease,
                self.ttl,
            )
            with self._lease_guard:
                self._lease = self._register()
            for callback in self._on_lease_lost:
                callback()

    def live_nodes(self) -> list[NodeInfo]:
        """Every node whose lease is alive, by id. Raises Unavailable."""
        nodes = []
        for kv in self.client.get_prefix(f"{self.prefix}/nodes/"):
            record = json.loads(kv.value)
            nodes.append(
                NodeInfo(
                    id=record["id"],
                    address=record["address"],
                    started=datetime.fromisoformat(record["started"]),
                    free_bytes=int(record["free_bytes"]),
                    pool_bytes=int(record["pool_bytes"]),
                )
            )
        return sorted(nodes, key=lambda node: node.id)

    def address_of(self, node_id: str) -> str | None:
        """The API address of a live node, or None."""
        kv = self.client.get(self.node_key(node_id))
        return None if kv is None else str(json.loads(kv.value)["address"])

    def stop(self, revoke: bool = True) -> None:
        """Stop renewing; with ``revoke``, give the lease back (the node leaves at once),
        else it expires after the TTL."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
        with self._lease_guard:
            lease, self._lease = self._lease, None
        if lease is not None and revoke:
            try:
                self.client.revoke_lease(lease)
            except PfsError as exc:
                log.warning(
                    "node=%s lease not revoked (it expires by itself): %s", self.node_id, exc
                )
