"""Writes applied exactly once, however often they are sent.

A write whose reply was lost may have been applied, or may still be (see
``fenced_txn``), so every write goes out as a transaction fenced by a marker key of the
calling thread: however often it is sent, it is applied at most once, and the reply to
any copy says whether (and with what result) it was. ``AmbiguousWrite`` is left for a
write whose outcome no reply settled before the call's budget ran out.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Any

from pfs_volume.meta.etcd_transport import EtcdTransport
from pfs_volume.meta.etcd_txn import (
    Compare,
    Op,
    b64,
    create_revision_equals,
    put_op,
    value_equals,
)

log = logging.getLogger(__name__)

MARKER_PREFIX = "/pfs-client/writes/"
"""Where each client keeps the marker keys that fence its writes (``fenced_txn``):
``<prefix><client id>/<thread ident>``. Outside every ``/pfs...`` record prefix, so no
record write or prefix delete of the store touches them."""


class ExactlyOnce:
    """The exactly-once writes of one client: its marker keys and what each thread's
    last write left in its marker.

    Args:
        transport: where the writes go.
        marker_prefix: where the client keeps its marker keys (``MARKER_PREFIX``); no
            other writer may touch keys under it.
        client_id: the client's id, under ``marker_prefix``.
    """

    def __init__(self, transport: EtcdTransport, marker_prefix: str, client_id: str) -> None:
        self._transport = transport
        self._marker_prefix = f"{marker_prefix.rstrip('/')}/{client_id}/"
        # Marker keys carry no lease: a marker must outlast every copy of a write still
        # in flight, a lease would need its own keep-alive (and make every write fail
        # when that lapsed), and all it would save is one key of about 60 bytes per
        # thread that ever wrote, left behind when a process ends.
        self._markers: dict[int, bytes | None] = {}
        """Per thread ident: the marker value its last write left (None: no marker
        yet). A thread ident is used by one thread at a time (idents are reused only
        after a thread ends), so a thread that gets an old ident continues its chain."""

    def write(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> bool:
        """Apply a transaction exactly once (see ``fenced_txn``); True when its compares
        held.

        Raises:
            LeaseLost: a put names an unknown lease. AmbiguousWrite: the budget ran out
            with the outcome unknown. Unavailable: nothing was applied.
        """
        deadline = self._transport.deadline()
        ident = threading.get_ident()
        marker = f"{self._marker_prefix}{ident}"
        token = secrets.token_hex(8).encode()
        while True:
            expected = self._markers.get(ident)
            payload = fenced_txn(marker, expected, token, compare, success, failure)
            result = self._transport.post("kv/txn", payload, deadline, write=True)
            response = (result.get("responses") or [{}])[0]
            if result.get("succeeded"):  # this copy was applied
                held = bool(response.get("response_txn", {}).get("succeeded"))
                self._markers[ident] = marker_value(token, held)
                return held
            kvs = response.get("response_range", {}).get("kvs") or []
            current = base64.b64decode(kvs[0].get("value", "")) if kvs else None
            self._markers[ident] = current
            if current in (marker_value(token, True), marker_value(token, False)):
                return current == marker_value(token, True)  # an earlier copy was applied
            # The marker moved on without this write (a write of this thread that was
            # reported ambiguous landed after all): the copies sent so far compare
            # against a value the marker never takes again, so send one that matches.
            log.info("etcd write marker %s moved on unseen; sending the write again", marker)


def fenced_txn(
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
        + [put_op(marker, marker_value(token, True)).payload()],
        "failure": [op.payload() for op in failure]
        + [put_op(marker, marker_value(token, False)).payload()],
    }
    return {
        "compare": [fence.payload()],
        "success": [{"request_txn": inner}],
        "failure": [{"request_range": {"key": b64(marker)}}],
    }


def marker_value(token: bytes, held: bool) -> bytes:
    """What a write with ``token`` leaves in its marker: the token and its result."""
    return token + (b" 1" if held else b" 0")
