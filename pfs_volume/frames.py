"""Length-prefixed frames: how pfs carries ``btrfs send`` streams, in export files and
between nodes. Each frame is an 8-byte big-endian length and that many bytes; a
zero-length frame ends the stream, so a cut stream is told from a whole one."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator

from pfs_volume.errors import PfsError

FRAME = struct.Struct(">Q")
MAX_FRAME = 64 * 1024 * 1024


def encode_frames(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Frame a byte stream (headers and chunks yielded apart: no copying), ended by the
    zero-length frame."""
    for chunk in chunks:
        if chunk:
            yield FRAME.pack(len(chunk))
            yield chunk
    yield FRAME.pack(0)


def decode_frames(
    read: Callable[[int], bytes],
    truncated: Callable[[], PfsError],
    too_long: Callable[[int], PfsError],
) -> Iterator[bytes]:
    """The payload of a framed stream read with ``read(n)``.

    Raises:
        ``truncated()``: the stream ended before its end frame.
        ``too_long(length)``: a frame is longer than MAX_FRAME.
    """
    while True:
        (length,) = FRAME.unpack(_read_exactly(read, FRAME.size, truncated))
        if length == 0:
            return
        if length > MAX_FRAME:
            raise too_long(length)
        yield _read_exactly(read, length, truncated)


def _read_exactly(
    read: Callable[[int], bytes], size: int, truncated: Callable[[], PfsError]
) -> bytes:
    parts = []
    left = size
    while left:
        data = read(left)
        if not data:
            raise truncated()
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
