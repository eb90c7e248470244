"""A streamed answer that breaks part-way (the daemon dies or fails mid-stream) ends the
CLI's ``get``, ``cat`` and ``export`` with ``pfs: error: the answer was cut off ...``
(exit 1), never a traceback. A fake server sends the start of a chunked answer and
closes the connection."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_run import invoke


def _tar_start() -> bytes:
    """The first 4 KiB of a tar holding a 64 KiB file: valid so far, then nothing."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo("r/big")
        member.size = 65536
        tar.addfile(member, io.BytesIO(b"x" * 65536))
    return buffer.getvalue()[:4096]


def _serve_cut_off(listener: socket.socket, chunked: bool) -> None:
    body = _tar_start()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            if chunked:
                head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                conn.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n")
            else:  # a length that is never reached
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
                conn.sendall(head + body)


@pytest.fixture(params=["chunked", "length"])
def cut_off_api(request: pytest.FixtureRequest) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    worker = threading.Thread(
        target=_serve_cut_off, args=(listener, request.param == "chunked"), daemon=True
    )
    worker.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        # A close alone leaves accept() blocked (the join then waited its 5 s each time);
        # a shutdown wakes it.
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        worker.join(5)
        assert not worker.is_alive()


@pytest.mark.parametrize(
    "verb",
    [
        ["get", "r@master", "-o", "{tmp}/out"],
        ["cat", "r@master", "big"],
        ["repo", "export", "r", "-o", "{tmp}/r.pfs"],
    ],
    ids=["get", "cat", "export"],
)
def test_a_stream_cut_off_is_a_clear_error(
    cut_off_api: str, verb: list[str], tmp_path: Path
) -> None:
    args = [part.replace("{tmp}", str(tmp_path)) for part in verb]
    result = invoke(["--api", cut_off_api, *args])
    assert result.exit_code == 1, (result.exception, result.stderr)
    assert result.exception is None, result.exception
    assert result.stderr.startswith("pfs: error: the answer was cut off"), result.stderr
    assert "Traceback" not in result.stderr
