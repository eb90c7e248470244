"""Talking to other nodes' APIs: commit streams and fetch requests, with the cluster
token on every request.

A commit travels as its ``btrfs send`` stream cut into frames (an 8-byte big-endian
length, then that many bytes) and ended by a zero-length frame. The end frame is what
makes a stream whole: a sender that dies mid-stream leaves the receiver without it, and
the receiver then kills ``btrfs receive`` before it can finish the snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import requests
import urllib3

from pfs_volume.errors import (
    Conflict,
    NotFound,
    PfsError,
    StorageError,
    Unavailable,
    UnreadableAnswer,
    error_from_response,
)
from pfs_volume.frames import decode_frames

TOKEN_HEADER = "Authorization"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 20.0
"""Seconds a stream may stall before the transfer is given up."""
FETCH_REQUEST_TIMEOUT = 600.0
"""Seconds a peer may take to fetch a commit it was asked to replicate."""


def decode_stream(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """The payload of a framed commit stream read with ``read(n)``.

    Raises:
        Unavailable: the stream ended before its end frame (the sender died or the
            connection broke).
        StorageError: a frame is too long.
    """

    def checked(size: int) -> bytes:
        try:
            return read(size)
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
            ValueError,
        ) as exc:
            raise Unavailable(f"the commit stream broke off: {exc}") from None

    return decode_frames(
        checked,
        truncated=lambda: Unavailable("the commit stream ended before it was whole (sender gone?)"),
        too_long=lambda n: StorageError(f"a commit stream frame of {n} bytes is too long"),
    )


class PeerClient:
    """HTTP calls to other nodes' APIs.

    Args:
        token: the cluster token every node shares.
    """

    def __init__(self, token: str) -> None:
        self._headers = {TOKEN_HEADER: f"Bearer {token}"}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def stream(
        self, address: str, repo: str, commit_id: str, parent: str | None
    ) -> Iterator[bytes]:
        """The send stream of a commit from the node at ``address``, incremental against
        ``parent`` when given, as chunks.

        Raises:
            Unavailable: the node cannot be reached, the stream broke off or stalled, or
                the node answered an error other than these two.
            NotFound, Conflict: the node lacks the commit or the parent.
        """
        url = f"{address}/v1/peer/repos/{repo}/commits/{commit_id}/stream"
        try:
            response = self._session().get(
                url,
                params={"parent": parent} if parent else None,
                headers=self._headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except requests.RequestException as exc:
            raise Unavailable(f"node at {address} cannot be reached: {exc}") from None
        # Only "lacks the commit" and "lacks the parent" say something of this request;
        # any other error (a holder's 500, or a code it should not send) must neither
        # pass for this node's own nor stop the fetch from trying another holder.
        _raise_for_error(response, address, meaningful=(NotFound, Conflict))
        return _stream_body(response)

    def request_fetch(self, address: str, repo: str, commit_id: str, source: str) -> list[str]:
        """Ask the node at ``address`` to fetch a commit (it pulls the stream from
        ``source`` or another holder); returns the commit's holders afterwards.

        Raises:
            Unavailable: the node cannot be reached. PfsError: what the node reported.
        """
        url = f"{address}/v1/peer/repos/{repo}/commits/{commit_id}/fetch"
        try:
            response = self._session().post(
                url,
                json={"from": source},
                headers=self._headers,
                timeout=(CONNECT_TIMEOUT, FETCH_REQUEST_TIMEOUT),
            )
        except requests.RequestException as exc:
            raise Unavailable(f"node at {address} cannot be reached: {exc}") from None
        _raise_for_error(response, address)
        return list(response.json()["holders"])


def _stream_body(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from decode_stream(response.raw.read)
    finally:
        response.close()


def _raise_for_error(
    response: requests.Response,
    address: str,
    meaningful: tuple[type[PfsError], ...] = (PfsError,),
) -> None:
    """Raise what a node's error answer reports: its error class when that is one of
    ``meaningful``, else Unavailable with the node's status and words."""
    if response.status_code < 400:
        return
    body = response.content
    response.close()
    reported = error_from_response(response.status_code, body)
    if isinstance(reported, UnreadableAnswer):
        raise Unavailable(f"node at {address} answered HTTP {response.status_code}")
    if not isinstance(reported, meaningful):
        raise Unavailable(f"node at {address} answered HTTP {response.status_code}: {reported}")
    raise type(reported)(f"node at {address}: {reported}")
