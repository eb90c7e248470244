"""Reaching etcd: its endpoints, retries, time limits and leader failover.

``etcd3gw`` speaks etcd's v3 JSON gateway over HTTP (``requests``). This module uses it
for what it does well (the URL layout, one ``requests.Session`` per ``Etcd3Client``,
status-code mapping) and adds what pfs needs around it:

* Several endpoints, and riding out an etcd leader election. A request that fails (no
  connection, no reply in time, etcd's "no leader" or "request timed out") goes to the
  next endpoint, and after a round of failures the call waits a little and tries the
  round again, until its deadline. When no endpoint even accepts a connection the call
  fails at once: etcd is down, there is nothing to wait for. ``Unavailable`` then names
  every endpoint and what each last said: pfs never falls back to local metadata.
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

Every request sent through here must be harmless to repeat: a read, or a write fenced
by ``etcd_once``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd3gw_errors
from etcd3gw.client import Etcd3Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from pfs_volume.errors import AmbiguousWrite, LeaseLost, PfsError, StorageError, Unavailable

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
API_PATH = "/v3/"
_GRPC_UNKNOWN, _GRPC_DEADLINE, _GRPC_NOT_FOUND = 2, 4, 5
_GRPC_RESOURCE_EXHAUSTED, _GRPC_UNAVAILABLE = 8, 14
_TRANSIENT_CODES = {_GRPC_UNKNOWN, _GRPC_DEADLINE, _GRPC_RESOURCE_EXHAUSTED, _GRPC_UNAVAILABLE}
"""gRPC codes of etcd replies that mean "not now" (no leader, leader changed, request
timed out, too many requests; "context deadline exceeded" comes as Unknown). A write that
got one of these may still have been committed, except for "no leader", which etcd
returns before proposing."""
_LEADER_REQUIRED = {"Grpc-Metadata-Hasleader": "true"}


class EtcdTransport:
    """Requests to one etcd cluster over its endpoints, safe to share between threads.

    Args:
        endpoints: client URLs of cluster members, e.g. ``"http://127.0.0.1:2379"``.
        timeout: seconds per HTTP request to connect, and again to read the reply.
        budget: seconds one call may spend on retries before it gives up.
    Raises:
        ValueError: no endpoints, or one that is not an http(s) URL with a host.
    """

    def __init__(self, endpoints: Sequence[str], timeout: float, budget: float) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints: tuple[str, ...] = tuple(e.rstrip("/") for e in endpoints)
        self._addresses = [_address(e) for e in self.endpoints]
        self.timeout = timeout
        self.budget = budget
        self._local = threading.local()
        self._all_lock = threading.Lock()
        self._all: list[Etcd3Client] = []
        self._preferred = 0
        """The endpoint that answered last: calls start there, so a dead first endpoint
        costs one failed connection, not one per call."""

    def deadline(self) -> float:
        """The deadline (``time.monotonic()``) of a call starting now."""
        return time.monotonic() + self.budget

    def close(self) -> None:
        """Close every thread's HTTP connections. A later call opens new ones."""
        with self._all_lock:
            clients, self._all = self._all, []
        for client in clients:
            client.session.close()
        self._local = threading.local()

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

    def post(
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
