"""Watching a key prefix in etcd: every change under it from a known revision on, in
order, or word that the watch is lost.

A watch here is one-shot: it delivers changes until it ends, then says once why it ended
(``on_lost``) and is done. Whoever uses it reads what it needs afresh after that and
starts a new watch from the revision it read at (``EtcdClient.revision``), so nothing is
missed between a read and the watch: the caller takes ``revision()`` first, starts the
watch from the next revision, then reads. Reconnecting and resuming quietly is left out
on purpose: after an etcd restart from a backup or a compaction the old revision may not
mean what it did, and a fresh read is always right.

``etcd3gw``'s ``Watcher`` is not used: it streams with no way to learn that the stream
ended (its reader runs in a thread pool whose result nobody reads, so a dropped
connection, an etcd restart or an error reply are all silent), and it ignores a watch
that etcd cancels (compaction of the start revision). A caller could not tell a quiet
prefix from a dead watch. This module posts the watch itself on the v3 JSON gateway
(``/v3/watch``, newline-separated JSON objects on one streamed reply), like ``etcd3gw``
does, and reports every way it can end.

A quiet watch sends nothing for as long as nothing changes, so a read timeout cannot
tell a quiet prefix from a lost peer: the connection uses TCP keepalive (a peer gone
without closing it, as in a network partition, is noticed in about
``KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT`` seconds). An etcd member that
loses its leader cancels the watch (``hasleader`` metadata, as in ``etcd_transport``).
Neither notices a member that is frozen (stopped, a paused VM, a hung disk) or a proxy
in front of etcd that stopped relaying: the kernel still answers keepalive probes, and
the connection stays open and silent for ever. A caller that knows its prefix changes
regularly (repair's: every node rewrites its key at each lease renewal) gives
``silence_limit``: a watch that heard nothing for that long ends as lost, and an
endpoint that does not answer the watch request within it is passed over for the next.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.exceptions import ReadTimeoutError

from pfs_volume.meta.etcd_txn import b64, prefix_end

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
"""TCP keepalive of the watch connection: probes after 10 s of silence, 3 missed probes
5 s apart drop it (about 25 s)."""
_KEEPALIVE = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT),
]


@dataclass(frozen=True)
class WatchEvent:
    """One change of one key."""

    key: str
    value: bytes
    """The new value (empty for a deletion)."""
    deleted: bool
    revision: int
    """The revision of the change."""
    version: int
    """The key's version after the change: 1 for a key just created, 0 when deleted."""


EventsCallback = Callable[[list[WatchEvent]], None]
LostCallback = Callable[[str], None]


class _KeepAliveAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options, *_KEEPALIVE]
        super().init_poolmanager(*args, **kwargs)


class PrefixWatch:
    """A watch of every key under ``prefix`` from ``start_revision`` on, run on its own
    thread once started.

    Args:
        endpoints: etcd client URLs; the first that accepts the watch serves it.
        prefix: the key prefix ("" for every key).
        start_revision: the first revision whose changes are delivered.
        on_events: called with each batch of changes, in revision order, on the watch's
            thread; what it raises ends the watch (as lost).
        on_lost: called once, on the watch's thread, with the reason, when the watch
            ends for any reason but ``stop`` (connection refused or dropped, etcd
            restarted, the start revision compacted, an error reply, silence).
        silence_limit: seconds without a byte from etcd after which the watch ends as
            lost (None: wait for ever; only for a prefix that may be quiet that long).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        start_revision: int,
        on_events: EventsCallback,
        on_lost: LostCallback,
        silence_limit: float | None = None,
    ) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix
        self.start_revision = start_revision
        self.on_events = on_events
        self.on_lost = on_lost
        self.silence_limit = silence_limit
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers.update({"Grpc-Metadata-Hasleader": "true"})
        self._session.mount("http://", _KeepAliveAdapter())
        self._session.mount("https://", _KeepAliveAdapter())
        self._stopping = threading.Event()
        self._response: requests.Response | None = None
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> PrefixWatch:
        """Start watching in the background; self."""
        self._thread = threading.Thread(target=self._run, name="pfs-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch (``on_lost`` is not called) and wait up to ``timeout`` for its
        thread."""
        self._stopping.set()
        with self._guard:
            response = self._response
        if response is not None:
            _shut(response)
        self._session.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """True while the watch thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            reason = self._watch()
        except Exception as exc:  # whatever ends it, the caller must hear
            reason = f"{type(exc).__name__}: {exc}"
        if not self._stopping.is_set():
            log.info("etcd watch of %s ended: %s", self.prefix, reason)
            self.on_lost(reason)

    def _watch(self) -> str:
        request = {
            "create_request": {
                "key": b64(self.prefix or b"\0"),  # the empty prefix: every key
                "range_end": b64(prefix_end(self.prefix)),
                "start_revision": self.start_revision,
            }
        }
        failures = []
        for endpoint in self.endpoints:
            try:
                response = self._session.post(
                    f"{endpoint}/v3/watch",
                    json=request,
                    stream=True,
                    timeout=(CONNECT_TIMEOUT, self.silence_limit),
                )
            except requests.RequestException as exc:
                failures.append(f"{endpoint}: {exc}")
                continue
            if response.status_code != 200:
                failures.append(f"{endpoint}: HTTP {response.status_code} {response.text[:200]}")
                response.close()
                continue
            with self._guard:
                self._response = response
            if self._stopping.is_set():
                _shut(response)
                return "stopped"
            try:
                return self._read(response)
            finally:
                response.close()
        return "no endpoint accepted the watch: " + "; ".join(failures)

    def _read(self, response: requests.Response) -> str:
        """Deliver the stream's changes until it ends; why it ended."""
        pending = b""
        try:
            for chunk in response.iter_content(chunk_size=None):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    ended = self._message(json.loads(line))
                    if ended is not None:
                        return ended
        except requests.RequestException as exc:
            if self.silence_limit is not None and _timed_out(exc):
                return f"silent for over {self.silence_limit:g} s (etcd frozen or cut off?)"
            raise
        return "the stream ended (etcd closed the connection)"

    def _message(self, message: dict[str, Any]) -> str | None:
        """Handle one reply of the stream; why the watch ended, or None."""
        if "error" in message:
            return f"etcd replied with an error: {message['error']}"
        result = message.get("result") or {}
        if result.get("canceled"):
            compacted = result.get("compact_revision")
            why = result.get("cancel_reason") or ""
            if compacted:
                return f"canceled: revision {self.start_revision} is compacted (to {compacted})"
            return f"canceled by etcd {why}".rstrip()
        events = [_event(item) for item in result.get("events") or []]
        if events and not self._stopping.is_set():
            self.on_events(events)
        return None


def _event(item: dict[str, Any]) -> WatchEvent:
    kv = item.get("kv") or {}
    return WatchEvent(
        # Keys are bytes: another application's need not be UTF-8 (pfs's always are);
        # one that is not must not end the watch. Other bytes come as surrogates.
        key=base64.b64decode(kv.get("key", "")).decode(errors="surrogateescape"),
        value=base64.b64decode(kv.get("value", "")),
        deleted=item.get("type") == "DELETE",
        revision=int(kv.get("mod_revision", 0)),
        version=int(kv.get("version", 0)),
    )


def _timed_out(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a read timeout."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (TimeoutError, ReadTimeoutError, requests.Timeout)):
            return True
        args = getattr(seen, "args", ())
        inner = args[0] if args and isinstance(args[0], BaseException) else None
        seen = inner or seen.__cause__ or seen.__context__
    return False


def _shut(response: requests.Response) -> None:
    """Break a streamed reply's connection, so that a thread blocked reading it wakes."""
    try:
        fp: Any = response.raw._fp  # the only handle on the socket
        sock = socket.socket(fileno=socket.dup(fp.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
    except (AttributeError, OSError, ValueError):
        pass
    response.close()
