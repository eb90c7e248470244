"""The framing of commit streams between nodes: whole streams pass, cut ones never do."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.cluster.peer import decode_stream as decode_frames
from pfs_volume.errors import StorageError, Unavailable
from pfs_volume.frames import FRAME, MAX_FRAME, encode_frames


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_frames_round_trip(chunks: list[bytes]) -> None:
    wire = b"".join(encode_frames(chunks))
    assert b"".join(decode_frames(io.BytesIO(wire).read)) == b"".join(chunks)


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=10), st.data())
def test_a_stream_cut_anywhere_before_its_end_frame_is_refused(
    chunks: list[bytes], data: st.DataObject
) -> None:
    wire = b"".join(encode_frames(chunks))
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(Unavailable, match="ended before it was whole"):
        b"".join(decode_frames(io.BytesIO(wire[:cut]).read))


def test_an_oversized_frame_is_refused() -> None:
    wire = FRAME.pack(MAX_FRAME + 1) + b"x"
    with pytest.raises(StorageError, match="too long"):
        list(decode_frames(io.BytesIO(wire).read))
