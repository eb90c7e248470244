"""A scripted HTTP server on a unix socket (or the loopback), for tests of the CLI's
client: each connection's request head is read, then a script answers it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

Script = Callable[[socket.socket, bytes], None]
"""What the server does with a connection, given the request's head."""


class ScriptedServer:
    """A unix socket server answering each connection by a script; keeps what it got."""

    def __init__(self, path: Path | None, script: Script) -> None:
        self.script = script
        if path is None:  # TCP on the loopback: ``path`` is an http:// URL
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.path: Path | str = f"http://127.0.0.1:{self.listener.getsockname()[1]}/pre"
        else:
            self.path = path
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(str(path))
            self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    head += piece
                self.script(conn, head)

    def close(self) -> None:
        self.listener.close()


def answer_with(raw: bytes) -> Script:
    def script(conn: socket.socket, head: bytes) -> None:
        conn.sendall(raw)

    return script


def json_answer(status: int, body: object) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%b" % (status, len(data), data)
