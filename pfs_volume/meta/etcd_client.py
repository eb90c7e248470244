"""The one module that talks to etcd: a thin, typed layer over ``etcd3gw``.

``etcd3gw`` speaks etcd's v3 JSON gateway over HTTP (``requests``). This module uses it
for what it does well (the URL layout, one ``requests.Session`` per ``Etcd3Client``,
status-code mapping) and adds what pfs needs around it:

* Several endpoints, and riding out an etcd leader election. A request that fails (no
  connection, no reply in time, etcd's "no leader" or "request timed out") goes to the
  next endpoint, and after a round of failures the call waits a little and tries the
  round again, until ``budget`` seconds have passed. When no endpoint even accepts a
  connection the call fails at once: etcd is down, there is nothing to wait for.
  ``Unavailable`` then names every endpoint and what each last said: pfs never falls back
  to local metadata.
* Writes applied exactly once. A write whose reply was lost may have been applied, or may
  still be (see ``_fenced_txn``), so every write goes out as a transaction fenced by a
  marker key of the calling thread: however often it is sent, it is applied at most once,
  and the reply to any copy says whether (and with what result) it was. ``AmbiguousWrite``
  is left for a write whose outcome no reply settled before the budget ran out.
* Bounded time. Each HTTP request has ``timeout`` seconds to connect and again to read,
  each call ``budget`` seconds in all (see ``OPERATION_BUDGET``).
* Requests carry gRPC metadata ``hasleader=true`` (the gateway turns ``Grpc-Metadata-*``
  headers into metadata): a member without a leader refuses them at once with "no
  leader" instead of holding them until its own request timeout (7 s by default).
* Thread safety. ``requests.Session`` is not documented as thread-safe and the daemon
  serves from several threads, so each thread gets its own ``Etcd3Client`` (and session)
  per endpoint.
* The API path is fixed to ``/v3/`` (etcd 3.4 and later) instead of ``etcd3gw``'s probe of
  ``/version`` before the first request, which would cost a round trip per thread and
  endpoint and could itself fail.
* Environment proxies are ignored: etcd is reached directly.
* Keys are ``str`` (UTF-8), values ``bytes`` (``str`` values are UTF-8 encoded); both go
  base64-encoded on the wire, as the gateway wants them. (``etcd3gw``'s own helpers encode
  ``str`` as Latin-1, which fails on other characters, so they are not used.)

``etcd3gw``'s ``Lock`` is never used: its acquire does not block and its context manager
ignores the result. pfs builds locks from ``txn`` and leases (``pfs_volume.cluster``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd3gw_errors
from etcd3gw.client import Etcd3Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from pfs_volume.errors import AmbiguousWrite, PfsError, StorageError, Unavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
"""Seconds one HTTP request has to connect, and again to read the reply. A healthy etcd
answers in milliseconds (it warns about any apply slower than 100 ms). A write that got
no reply in 2 s most likely went to a member that forwarded it to a leader that just died:
etcd drops it and answers only when its own request timeout ends (5 s plus two election
timeouts, 7 s by default). Every request is safe to send again (writes are fenced), so
waiting longer would only delay the retry that succeeds."""
OPERATION_BUDGET = 10.0
"""Seconds one call may spend retrying across endpoints before it gives up with
Unavailable (or AmbiguousWrite). Docker gives most plugin calls about 60 s; a request
that fails makes at most about four etcd calls before it answers (the failing one, then
cleanup that the services skip once etcd is known unreachable), so 10 s keeps even that
inside Docker's limit, and still covers an etcd leader election (about a second with
etcd's defaults) several times over."""
RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 0.5
"""Seconds between rounds over the endpoints: doubling from ``RETRY_DELAY`` up to this, so
an election (a few hundred ms) costs little and a cluster without quorum is asked about
twice a second per endpoint, not flooded."""
MARKER_PREFIX = "/pfs-client/writes/"
"""Where each client keeps the marker keys that fence its writes (``_fenced_txn``):
``<prefix><client id>/<thread ident>``. Outside every ``/pfs...`` record prefix, so no
record write or prefix delete of the store touches them."""
API_PATH = "/v3/"
ETCD_MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the most compares, or success ops, or failure ops,
one transaction may hold."""
MAX_TXN_OPS = ETCD_MAX_TXN_OPS - 2
"""The most compares, or success ops, or failure ops, one ``txn`` may hold: etcd's limit
less the two ops of the fence around it (``_fenced_txn``): the outer transaction's op
(etcd allows a nested transaction its parent's limit less the parent's own op count) and
the marker write in each branch."""
PAGE_SIZE = 1000
"""Keys per range request when reading a prefix: replies stay small, and all pages are
read at the revision of the first so the result is one consistent snapshot."""

_GRPC_UNKNOWN, _GRPC_DEADLINE, _GRPC_NOT_FOUND = 2, 4, 5
_GRPC_RESOURCE_EXHAUSTED, _GRPC_UNAVAILABLE = 8, 14
_TRANSIENT_CODES = {_GRPC_UNKNOWN, _GRPC_DEADLINE, _GRPC_RESOURCE_EXHAUSTED, _GRPC_UNAVAILABLE}
"""gRPC codes of etcd replies that mean "not now" (no leader, leader changed, request
timed out, too many requests; "context deadline exceeded" comes as Unknown). A write that
got one of these may still have been committed, except for "no leader", which etcd
returns before proposing."""
_LEADER_REQUIRED = {"Grpc-Metadata-Hasleader": "true"}


class LeaseLost(PfsError):
    """The lease is gone (expired, revoked, or never known to this cluster): whatever was
    bound to it is deleted, and whatever it proved (a lock, a registration) no longer
    holds."""

    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class KeyValue:
    """One etcd key with its value and revisions (``lease`` 0: none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @property
    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode()


CompareTarget = Literal["VALUE", "CREATE", "MOD", "VERSION"]
CompareResult = Literal["EQUAL", "NOT_EQUAL", "GREATER", "LESS"]
_TARGET_FIELDS = {
    "VALUE": "value",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VERSION": "version",
}


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction, on a key or (with ``range_end``) on every key of
    a range; on an empty range it compares against an absent key (revisions 0)."""

    key: str
    target: CompareTarget
    operand: int | bytes
    result: CompareResult = "EQUAL"
    range_end: bytes | None = None

    def payload(self) -> dict[str, Any]:
        """The gateway's JSON form."""
        operand = _b64(self.operand) if isinstance(self.operand, bytes) else self.operand
        body: dict[str, Any] = {
            "key": _b64(self.key),
            "target": self.target,
            "result": self.result,
            _TARGET_FIELDS[self.target]: operand,
        }
        if self.range_end is not None:
            body["range_end"] = _b64(self.range_end)
        return body


@dataclass(frozen=True)
class Op:
    """One write of a transaction: a put, or a delete of a key or a range."""

    kind: Literal["put", "delete"]
    key: str
    value: bytes = b""
    lease: int | None = None
    range_end: bytes | None = None

    def payload(self) -> dict[str, Any]:
        """The gateway's JSON form."""
        if self.kind == "put":
            put: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
            if self.lease:
                put["lease"] = self.lease
            return {"request_put": put}
        delete: dict[str, Any] = {"key": _b64(self.key)}
        if self.range_end is not None:
            delete["range_end"] = _b64(self.range_end)
        return {"request_delete_range": delete}


def value_equals(key: str, value: str | bytes) -> Compare:
    """The key exists and holds ``value``."""
    return Compare(key, "VALUE", _bytes(value))


def create_revision_equals(key: str, revision: int) -> Compare:
    """The key was created at ``revision`` (0: the key is absent)."""
    return Compare(key, "CREATE", revision)


def mod_revision_equals(key: str, revision: int) -> Compare:
    """The key was last written at ``revision`` (0: the key is absent)."""
    return Compare(key, "MOD", revision)


def version_equals(key: str, version: int) -> Compare:
    """The key has been written ``version`` times since it was created (0: absent)."""
    return Compare(key, "VERSION", version)


def key_exists(key: str) -> Compare:
    """The key exists (any value)."""
    return Compare(key, "CREATE", 0, "NOT_EQUAL")


def prefix_empty(prefix: str) -> Compare:
    """No key starts with ``prefix``."""
    return Compare(prefix, "CREATE", 0, range_end=prefix_end(prefix))


def put_op(key: str, value: str | bytes, lease: int | None = None) -> Op:
    """Write ``value`` to ``key``, bound to ``lease`` if given."""
    return Op("put", key, _bytes(value), lease)


def delete_op(key: str) -> Op:
    """Delete ``key`` (nothing when it is absent)."""
    return Op("delete", key)


def delete_prefix_op(prefix: str) -> Op:
    """Delete every key that starts with ``prefix``."""
    return Op("delete", prefix, range_end=prefix_end(prefix))


def prefix_end(prefix: str) -> bytes:
    """The range end that makes [prefix, end) exactly the keys starting with ``prefix``:
    the prefix with its last byte below 0xff incremented (all keys when it has none)."""
    data = bytearray(prefix.encode())
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return b"\0"


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
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints: tuple[str, ...] = tuple(e.rstrip("/") for e in endpoints)
        self._addresses = [_address(e) for e in self.endpoints]
        self.timeout = timeout
        self.budget = budget
        self.client_id = secrets.token_hex(8)
        self._marker_prefix = f"{marker_prefix.rstrip('/')}/{self.client_id}/"
        # Marker keys carry no lease: a marker must outlast every copy of a write still
        # in flight, a lease would need its own keep-alive (and make every write fail
        # when that lapsed), and all it would save is one key of about 60 bytes per
        # thread that ever wrote, left behind when a process ends.
        self._markers: dict[int, bytes | None] = {}
        """Per thread ident: the marker value its last write left (None: no marker
        yet). A thread ident is used by one thread at a time (idents are reused only
        after a thread ends), so a thread that gets an old ident continues its chain."""
        self._local = threading.local()
        self._all_lock = threading.Lock()
        self._all: list[Etcd3Client] = []
        self._preferred = 0
        """The endpoint that answered last: calls start there, so a dead first endpoint
        costs one failed connection, not one per call."""

    # reads

    def get(self, key: str) -> KeyValue | None:
        """The key, or None when it is absent.

        Raises:
            Unavailable: no endpoint served the read within the budget.
        """
        result = self._post("kv/range", {"key": _b64(key)}, self._deadline())
        kvs = result.get("kvs") or []
        return _key_value(kvs[0]) if kvs else None

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
            payload = {"success": [{"request_range": {"key": _b64(k)}} for k in chunk]}
            result = self._post("kv/txn", payload, deadline)
            for response in result.get("responses", []):
                kvs = response.get("response_range", {}).get("kvs") or []
                found.append(_key_value(kvs[0]) if kvs else None)
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
        if limit is not None and limit <= 0:
            return []
        deadline = self._deadline()
        end = prefix_end(prefix)
        found: list[KeyValue] = []
        start = prefix.encode()
        revision: int | None = None
        while True:
            page = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(found))
            payload: dict[str, Any] = {
                "key": _b64(start),
                "range_end": _b64(end),
                "limit": page,
                "keys_only": keys_only,
            }
            if revision is not None:
                payload["revision"] = revision
            result = self._post("kv/range", payload, deadline)
            if revision is None:
                revision = int(result["header"]["revision"])
            kvs = [_key_value(item) for item in result.get("kvs") or []]
            found.extend(kvs)
            if not result.get("more") or not kvs or (limit is not None and len(found) >= limit):
                return found
            start = kvs[-1].key.encode() + b"\0"

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with ``prefix``. Raises Unavailable."""
        payload = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "count_only": True}
        return int(self._post("kv/range", payload, self._deadline()).get("count", 0))

    # writes

    def put(self, key: str, value: str | bytes, lease: int | None = None) -> None:
        """Write ``value`` to ``key``, bound to ``lease`` if given; applied exactly once
        however often it has to be sent (a fenced transaction, as ``txn``).

        Raises:
            LeaseLost: the lease is unknown. AmbiguousWrite: the budget ran out with the
            outcome unknown. Unavailable: nothing was written (no endpoint answered, or
            none within the budget).
        """
        self._fenced_write([], [put_op(key, value, lease)], [])

    def delete(self, key: str) -> bool:
        """Delete ``key``, exactly once; True when it existed. Raises as ``put``."""
        return self._fenced_write([key_exists(key)], [delete_op(key)], [])

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
        return self._fenced_write(compare, success, failure)

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
        payload = {"key": _b64("health"), "count_only": True}
        try:
            self._post("kv/range", payload, time.monotonic() + self.timeout)
        except (Unavailable, StorageError):
            return False
        return True

    def close(self) -> None:
        """Close every thread's HTTP connections. A later call opens new ones."""
        with self._all_lock:
            clients, self._all = self._all, []
        for client in clients:
            client.session.close()
        self._local = threading.local()

    # writes, exactly once

    def _fenced_write(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> bool:
        """Apply a transaction exactly once (see ``_fenced_txn``); True when its compares
        held. Raises as ``txn``."""
        deadline = self._deadline()
        ident = threading.get_ident()
        marker = f"{self._marker_prefix}{ident}"
        token = secrets.token_hex(8).encode()
        while True:
            expected = self._markers.get(ident)
            payload = _fenced_txn(marker, expected, token, compare, success, failure)
            result = self._post("kv/txn", payload, deadline, write=True)
            response = (result.get("responses") or [{}])[0]
            if result.get("succeeded"):  # this copy was applied
                held = bool(response.get("response_txn", {}).get("succeeded"))
                self._markers[ident] = _marker_value(token, held)
                return held
            kvs = response.get("response_range", {}).get("kvs") or []
            current = base64.b64decode(kvs[0].get("value", "")) if kvs else None
            self._markers[ident] = current
            if current in (_marker_value(token, True), _marker_value(token, False)):
                return current == _marker_value(token, True)  # an earlier copy was applied
            # The marker moved on without this write (a write of this thread that was
            # reported ambiguous landed after all): the copies sent so far compare
            # against a value the marker never takes again, so send one that matches.
            log.info("etcd write marker %s moved on unseen; sending the write again", marker)

    # transport

    def _deadline(self) -> float:
        return time.monotonic() + self.budget

    def _client(self, index: int) -> Etcd3Client:
        clients: dict[int, Etcd3Client] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        client = clients.get(index)
        if client is None:
            scheme, host, port = self._addresses[index]
            client = Etcd3Client(
                host=host, port=port, protocol=scheme, timeout=self.timeout, api_path=API_PATH
            )
            client.session.trust_env = False
            client.session.headers.update(_LEADER_REQUIRED)
            clients[index] = client
            with self._all_lock:
                self._all.append(client)
        return client

    def _post(
        self, path: str, payload: dict[str, Any], deadline: float, *, write: bool = False
    ) -> dict[str, Any]:
        """POST ``payload`` to the gateway's ``path`` until an endpoint answers: each
        endpoint in turn, starting with the one that answered last, then again after a
        pause, until ``deadline`` (time.monotonic()).

        Every request must be harmless to repeat: a read, or a fenced write.

        Args:
            write: the request is a write, so a failure after sending leaves its outcome
                unknown until some later copy is answered.
        Raises:
            StorageError, LeaseLost: etcd refused the request.
            Unavailable: no endpoint accepted a connection in a whole round (etcd is
                down: waiting would not help), or none answered before the deadline.
            AmbiguousWrite: as Unavailable, after a copy of the write that may have been
                applied.
        """
        failures: dict[str, str] = {}
        ambiguous = reached_any = False
        delay = RETRY_DELAY
        count = len(self.endpoints)
        started = time.monotonic()
        while True:
            reached = False
            first = self._preferred
            for step in range(count):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                index = (first + step) % count
                endpoint = self.endpoints[index]
                client = self._client(index)
                client.timeout = min(self.timeout, remaining)
                try:
                    result = client.post(client.get_url(path), json=payload)
                except (
                    etcd3gw_errors.Etcd3Exception,
                    requests.RequestException,
                    ValueError,
                ) as exc:
                    failure = _Failure.of(exc, client.timeout)
                    if failure.definite:
                        raise failure.error(endpoint) from exc
                    if not failures:
                        log.warning("etcd at %s failed (%s); trying again", endpoint, failure.cause)
                    else:
                        log.debug("etcd at %s failed (%s); trying again", endpoint, failure.cause)
                    failures[endpoint] = failure.cause
                    reached = reached or failure.reached
                    ambiguous = ambiguous or (write and failure.maybe_applied)
                    continue
                if failures:
                    log.info(
                        "etcd at %s answered after %.1f s of failures elsewhere",
                        endpoint,
                        time.monotonic() - started,
                    )
                self._preferred = index
                return dict(result)
            reached_any = reached_any or reached
            if not reached or time.monotonic() + delay >= deadline:
                elapsed = time.monotonic() - started
                raise self._gave_up(failures, ambiguous, reached_any, elapsed)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    def _gave_up(
        self, failures: dict[str, str], ambiguous: bool, reached_any: bool, elapsed: float
    ) -> Unavailable:
        """The error for a call that got no answer: AmbiguousWrite when a copy of the
        write may have been applied, else Unavailable, saying "unreachable" when no
        endpoint ever accepted a connection."""
        where = f"the cluster's metadata store (etcd at {', '.join(self.endpoints)})"
        causes = "; ".join(f"{endpoint}: {cause}" for endpoint, cause in failures.items())
        if ambiguous:
            return AmbiguousWrite(
                f"a write to {where} may or may not have been applied: no reply settled it "
                f"within {elapsed:.1f} s ({causes}); pfs does not fall back to local metadata"
            )
        if not reached_any:
            return Unavailable(
                f"{where} is unreachable: {causes}; pfs does not fall back to local metadata"
            )
        return Unavailable(
            f"{where} did not serve the request within {elapsed:.1f} s ({causes}); pfs does "
            "not fall back to local metadata"
        )


def _fenced_txn(
    marker: str,
    expected: bytes | None,
    token: bytes,
    compare: Sequence[Compare],
    success: Sequence[Op],
    failure: Sequence[Op],
) -> dict[str, Any]:
    """The transaction (as a nested one) that applies the caller's at most once.

    Why a fence: a write whose reply was lost may have been applied, and it may also be
    applied LATER. A member that has lost its leader holds a proposal (up to etcd's
    request timeout) and forwards it as soon as it learns the new leader, possibly after
    a read has shown the write absent; a re-sent write could then be applied twice, and
    a write the caller made in between could be overwritten. (Raft itself only promises
    that once a new leader has committed an entry of its term, an older entry that is not
    in its log never will be; a proposal that is not an entry yet is not covered.)

    The fence: each thread has a marker key, and each of its writes changes it. The
    outer compare holds only while the marker still has the value the thread's previous
    write left (``expected``; None: absent). Every copy of a write carries the same
    compare, so the first copy applied moves the marker and every other copy, however
    late, fails it: the write is applied at most once, and no old copy is applied after
    a later write of the thread. The caller's transaction runs nested, and each branch
    puts ``<token> 1`` or ``<token> 0`` into the marker. When the outer compare fails,
    the reply carries the marker: ``token`` there means an earlier copy was applied, and
    the 1 or 0 its result; anything else means none was, and none ever will be (they all
    compare against a value the marker has left for good: tokens are random, and only a
    writer this client does not know of could delete the marker).
    """
    fence = (
        create_revision_equals(marker, 0) if expected is None else value_equals(marker, expected)
    )
    inner = {
        "compare": [c.payload() for c in compare],
        "success": [op.payload() for op in success]
        + [put_op(marker, _marker_value(token, True)).payload()],
        "failure": [op.payload() for op in failure]
        + [put_op(marker, _marker_value(token, False)).payload()],
    }
    return {
        "compare": [fence.payload()],
        "success": [{"request_txn": inner}],
        "failure": [{"request_range": {"key": _b64(marker)}}],
    }


def _marker_value(token: bytes, held: bool) -> bytes:
    return token + (b" 1" if held else b" 0")


@dataclass(frozen=True)
class _Failure:
    """What a failed request tells: did it reach a server, may it have been applied,
    did etcd refuse it for good."""

    cause: str
    reached: bool
    """False when the request never reached a server (no connection): nothing answers
    there."""
    maybe_applied: bool = False
    """True when a write may have been applied (it was sent and no answer says no)."""
    definite: bool = False
    """True when etcd answered with a definite refusal (bad request, unknown lease)."""
    grpc_code: int | None = None

    @classmethod
    def of(cls, exc: BaseException, timeout: float) -> _Failure:
        reply = _etcd_reply(exc)
        if reply is not None:
            code, message = reply
            if code in _TRANSIENT_CODES:
                # "no leader" is refused before the write is proposed; anything else
                # (request timed out, context deadline exceeded) may have been committed.
                return cls(f"etcd replied {message!r}", True, "no leader" not in message)
            return cls(f"etcd refused the request: {message}", True, False, True, code)
        # etcd3gw raises its own errors from inside ``except`` blocks, so the requests
        # error that says how far the request got is the context.
        cause = exc.__context__ if isinstance(exc, etcd3gw_errors.Etcd3Exception) else exc
        if isinstance(cause, requests.ConnectTimeout):
            return cls(f"no connection within {timeout:.3g} s", False)
        if isinstance(cause, requests.ConnectionError) and _never_connected(cause):
            return cls(f"cannot connect ({_last_clause(cause)})", False)
        if isinstance(cause, requests.Timeout):
            return cls(f"no reply within {timeout:.3g} s", True, True)
        if isinstance(cause, requests.RequestException):
            return cls(f"the connection failed: {cause}", True, True)
        return cls(f"an unexpected reply: {exc}", True, True)

    def error(self, endpoint: str) -> PfsError:
        """The exception for a definite refusal."""
        if self.grpc_code == _GRPC_NOT_FOUND and "lease not found" in self.cause:
            return LeaseLost(f"etcd at {endpoint}: the lease expired or is unknown")
        return StorageError(f"the cluster's metadata store (etcd at {endpoint}): {self.cause}")


def _etcd_reply(exc: BaseException) -> tuple[int, str] | None:
    """(gRPC code, message) when ``exc`` carries an error reply of etcd's gateway."""
    text = getattr(exc, "detail_text", None)
    if not isinstance(text, str):
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):  # a streaming call's error (lease keepalive)
        body = {"code": body["error"].get("grpc_code"), "message": body["error"].get("message")}
    if not isinstance(body.get("code"), int):
        return None
    return int(body["code"]), str(body.get("message") or body.get("error") or "")


def _never_connected(error: requests.ConnectionError) -> bool:
    """True when ``error`` failed while connecting (refused, unreachable, no DNS)."""
    inner = error.args[0] if error.args else None
    return isinstance(inner, MaxRetryError) and isinstance(inner.reason, ConnectTimeoutError)


def _last_clause(error: BaseException) -> str:
    """The end of a urllib3 error chain's text: ``[Errno 111] Connection refused``."""
    return str(error).rstrip("')\"").rsplit(": ", 1)[-1]


def _address(endpoint: str) -> tuple[str, str, int]:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"etcd endpoint {endpoint!r} is not an http(s)://HOST:PORT URL")
    return parts.scheme, parts.hostname, parts.port or 2379


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _b64(data: str | bytes) -> str:
    return base64.b64encode(_bytes(data)).decode("ascii")


def _key_value(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(item["key"]).decode(),
        value=base64.b64decode(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        version=int(item.get("version", 0)),
        lease=int(item.get("lease", 0)),
    )
