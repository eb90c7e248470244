"""The one module that talks to etcd: a thin, typed client over ``etcd3gw``.

It is three parts, each in its own module:

* ``etcd_transport``: the endpoints, retries, time limits and leader failover (every
  call gets ``budget`` seconds; ``Unavailable`` when no endpoint served it);
* ``etcd_txn``: transactions as data (``Compare``, ``Op``, ``KeyValue``) and their JSON
  form on etcd's v3 gateway;
* ``etcd_once``: writes applied exactly once however often they are sent (each goes out
  fenced by a marker key of the calling thread; ``AmbiguousWrite`` is left for a write
  whose outcome no reply settled before the budget ran out).

``EtcdClient`` puts them together: reads, writes, transactions and leases. Its names, and
those of the parts that callers use, are importable from here.

``etcd3gw``'s ``Lock`` is never used: its acquire does not block and its context manager
ignores the result. pfs builds locks from ``txn`` and leases (``pfs_volume.cluster``).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

from pfs_volume.errors import LeaseLost, StorageError, Unavailable
from pfs_volume.meta.etcd_once import MARKER_PREFIX, ExactlyOnce
from pfs_volume.meta.etcd_transport import DEFAULT_TIMEOUT, OPERATION_BUDGET, EtcdTransport
from pfs_volume.meta.etcd_txn import (
    ETCD_MAX_TXN_OPS,
    MAX_TXN_OPS,
    Compare,
    KeyValue,
    Op,
    b64,
    create_revision_equals,
    delete_op,
    delete_prefix_op,
    key_exists,
    key_value,
    mod_revision_equals,
    prefix_empty,
    prefix_end,
    put_op,
    value_equals,
    version_equals,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ETCD_MAX_TXN_OPS",
    "MARKER_PREFIX",
    "MAX_TXN_OPS",
    "OPERATION_BUDGET",
    "PAGE_SIZE",
    "Compare",
    "EtcdClient",
    "KeyValue",
    "Op",
    "create_revision_equals",
    "delete_op",
    "delete_prefix_op",
    "key_exists",
    "mod_revision_equals",
    "prefix_empty",
    "prefix_end",
    "put_op",
    "value_equals",
    "version_equals",
]

PAGE_SIZE = 1000
"""Keys per range request when reading a prefix: replies stay small, and all pages are
read at the revision of the first so the result is one consistent snapshot."""


class EtcdClient:
    """A client for one etcd cluster, safe to share between threads.

    Args:
        endpoints: client URLs of cluster members, e.g. ``"http://127.0.0.1:2379"``.
        timeout: seconds per HTTP request to connect, and again to read the reply.
        budget: seconds one call may spend on retries before it gives up.
        marker_prefix: where this client keeps the marker keys that fence its writes
            (``MARKER_PREFIX``); no other writer may touch keys under it.
    Raises:
        ValueError: no endpoints, or one that is not an http(s) URL with a host.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        *,
        budget: float = OPERATION_BUDGET,
        marker_prefix: str = MARKER_PREFIX,
    ) -> None:
        self._transport = EtcdTransport(endpoints, timeout, budget)
        self.endpoints = self._transport.endpoints
        self.timeout = timeout
        self.budget = budget
        self.client_id = secrets.token_hex(8)
        self._once = ExactlyOnce(self._transport, marker_prefix, self.client_id)

    # reads

    def get(self, key: str) -> KeyValue | None:
        """The key, or None when it is absent.

        Raises:
            Unavailable: no endpoint served the read within the budget.
        """
        result = self._post("kv/range", {"key": b64(key)}, self._deadline())
        kvs = result.get("kvs") or []
        return key_value(kvs[0]) if kvs else None

    def get_many(self, keys: Sequence[str]) -> list[KeyValue | None]:
        """Several keys, None for an absent one: read in one round trip at one revision
        (a read-only transaction) for up to ``MAX_TXN_OPS`` keys, in one such read per
        ``MAX_TXN_OPS`` beyond. Raises Unavailable."""
        if not keys:
            return []
        deadline = self._deadline()
        found: list[KeyValue | None] = []
        for start in range(0, len(keys), MAX_TXN_OPS):
            chunk = keys[start : start + MAX_TXN_OPS]
            payload = {"success": [{"request_range": {"key": b64(k)}} for k in chunk]}
            result = self._post("kv/txn", payload, deadline)
            for response in result.get("responses", []):
                kvs = response.get("response_range", {}).get("kvs") or []
                found.append(key_value(kvs[0]) if kvs else None)
        return found

    def get_prefix(
        self, prefix: str, *, limit: int | None = None, keys_only: bool = False
    ) -> list[KeyValue]:
        """Every key that starts with ``prefix``, sorted by key, read at one revision.

        Args:
            prefix: the key prefix.
            limit: at most this many keys (the first ones).
            keys_only: leave the values out (``value`` is then empty).
        Raises:
            Unavailable: no endpoint served the read within the budget.
        """
        return self.get_range(prefix, prefix, limit=limit, keys_only=keys_only)

    def get_range(
        self,
        first: str,
        prefix: str,
        *,
        before: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> list[KeyValue]:
        """The keys that start with ``prefix`` and sort at or after ``first`` (and before
        ``before`` if given), sorted by key, read at one revision. etcd 3.4 reads every
        key of a range to answer even a limited request: bound a range with ``before``
        where it may be long. Other arguments and errors as ``get_prefix``."""
        if limit is not None and limit <= 0:
            return []
        deadline = self._deadline()
        end = prefix_end(prefix) if before is None else before.encode()
        found: list[KeyValue] = []
        start = first.encode()
        revision: int | None = None
        while True:
            page = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(found))
            payload: dict[str, Any] = {
                "key": b64(start),
                "range_end": b64(end),
                "limit": page,
                "keys_only": keys_only,
            }
            if revision is not None:
                payload["revision"] = revision
            result = self._post("kv/range", payload, deadline)
            if revision is None:
                revision = int(result["header"]["revision"])
            kvs = [key_value(item) for item in result.get("kvs") or []]
            found.extend(kvs)
            if not result.get("more") or not kvs or (limit is not None and len(found) >= limit):
                return found
            start = kvs[-1].key.encode() + b"\0"

    def revision(self) -> int:
        """The store's current revision: every change up to it is in what a read made
        after this call sees (a watch from ``revision() + 1`` misses nothing after such
        a read). Raises Unavailable."""
        payload = {"key": b64("revision"), "count_only": True}
        return int(self._post("kv/range", payload, self._deadline())["header"]["revision"])

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with ``prefix``. Raises Unavailable."""
        payload = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "count_only": True}
        return int(self._post("kv/range", payload, self._deadline()).get("count", 0))

    # writes

    def put(self, key: str, value: str | bytes, lease: int | None = None) -> None:
        """Write ``value`` to ``key``, bound to ``lease`` if given; applied exactly once
        however often it has to be sent (a fenced transaction, as ``txn``; see ``etcd_once``).

        Raises:
            LeaseLost: the lease is unknown. AmbiguousWrite: the budget ran out with the
            outcome unknown. Unavailable: nothing was written (no endpoint answered, or
            none within the budget).
        """
        self._once.write([], [put_op(key, value, lease)], [])

    def delete(self, key: str) -> bool:
        """Delete ``key``, exactly once; True when it existed. Raises as ``put``."""
        return self._once.write([key_exists(key)], [delete_op(key)], [])

    def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> bool:
        """One transaction: if every compare holds, apply ``success``, else ``failure``;
        True when the compares held.

        Applied exactly once however often it has to be sent (after a lost reply, to
        another endpoint), and the result is that of the one application. At most
        ``MAX_TXN_OPS`` of each kind, no key written twice, and no range deleted that
        covers the client's marker keys (etcd refuses all three with StorageError).

        Raises:
            LeaseLost: a put names an unknown lease. AmbiguousWrite: the budget ran out
            with the outcome unknown. Unavailable: nothing was applied (no endpoint
            answered, or none within the budget).
        """
        if not success and not failure:  # nothing to apply: a read
            payload = {"compare": [c.payload() for c in compare]}
            return bool(self._post("kv/txn", payload, self._deadline()).get("succeeded"))
        return self._once.write(compare, success, failure)

    # leases

    def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id. Raises Unavailable.

        Retried like a read: a lease granted by a request whose reply was lost is never
        used and expires after ``ttl``.
        """
        result = self._post("lease/grant", {"TTL": ttl, "ID": 0}, self._deadline())
        return int(result["ID"])

    def refresh_lease(self, lease_id: int) -> int:
        """Renew a lease to its full TTL; the TTL in seconds.

        Raises:
            LeaseLost: the lease expired or is unknown. Unavailable: no endpoint renewed
            it within the budget.
        """
        result = self._post("lease/keepalive", {"ID": lease_id}, self._deadline())
        ttl = int(result.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseLost(f"etcd lease {lease_id:x} expired or is unknown")
        return ttl

    def revoke_lease(self, lease_id: int) -> None:
        """End a lease now, deleting the keys bound to it; no error when it is gone
        already. Raises Unavailable."""
        with contextlib.suppress(LeaseLost):
            self._post("kv/lease/revoke", {"ID": lease_id}, self._deadline())

    # the client itself

    def healthy(self) -> bool:
        """True when some endpoint serves a linearizable read (its cluster has a leader
        and a quorum). Takes up to ``timeout`` when none does."""
        payload = {"key": b64("health"), "count_only": True}
        try:
            self._post("kv/range", payload, time.monotonic() + self.timeout)
        except (Unavailable, StorageError):
            return False
        return True

    def close(self) -> None:
        """Close every thread's HTTP connections. A later call opens new ones."""
        self._transport.close()

    # transport

    def _deadline(self) -> float:
        return self._transport.deadline()

    def _post(self, path: str, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
        """A read (or a lease call) through the transport (``EtcdTransport.post``)."""
        return self._transport.post(path, payload, deadline)
