"""``pfs --version``: the CLI's version, and the version of the daemon it talks to.

The CLI's version is always printed and the exit status is 0 even when no daemon
answers: the option reports what is installed, and says so when the daemon cannot be
reached (like ``docker --version``, it is no health check; ``pfs doctor`` is).
"""

from __future__ import annotations

import json
import time
from typing import BinaryIO

from pfs_volume import package_version
from pfs_volume.cli.connection import send

HEALTH = "/v1/health"
"""Asked directly, not through ``ApiClient``: its answer while the daemon starts (503,
with the version and the step) is what ``--version`` shows, not an error to raise."""
HEALTH_TIMEOUT = 5.0
"""Seconds ``--version`` waits for the daemon, in all (a server sending its answer a
byte at a time is not waited on for each): it says "not reachable" after that."""
HEALTH_BODY = 64 * 1024
"""Bytes of the health answer read at most (the daemon's is a few dozen)."""
SHOWN = 200
"""Characters of the daemon's version or message shown at most."""


def version_lines(address: str) -> list[str]:
    """What ``pfs --version`` prints: the CLI's version, then the daemon's at ``address``
    (a unix socket path or an ``http://`` URL), or why it is not known."""
    lines = [f"pfs {package_version()} (CLI)"]
    deadline = time.monotonic() + HEALTH_TIMEOUT
    try:
        with send(address, "GET", HEALTH, {}, None, {}, HEALTH_TIMEOUT) as answer:
            status, content = answer.status_code, _read_body(answer.raw, deadline)
    except OSError as exc:
        return [*lines, f"daemon: not reachable at {address} ({exc.__class__.__name__}: {exc})"]
    try:
        body = json.loads(content)
        version = _shown(body["version"])
    except (ValueError, KeyError, TypeError):
        return [*lines, f"daemon: at {address}, answered {status} without a version"]
    words = f"daemon {version} at {address}"
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else f"HTTP {status}"
        words += f" ({_shown(message)})"
    return [*lines, words]


def _read_body(raw: BinaryIO, deadline: float) -> bytes:
    """The answer's body, read until ``deadline`` (monotonic); empty (no version then)
    when it is longer than ``HEALTH_BODY`` bytes.

    Raises:
        TimeoutError: it did not end in time.
    """
    content = b""
    while piece := raw.read1(4096):  # type: ignore[attr-defined]  # a BufferedReader
        content += piece
        if len(content) > HEALTH_BODY:
            return b""
        if time.monotonic() > deadline:
            raise TimeoutError(f"the answer did not end within {HEALTH_TIMEOUT:g} s")
    return content


def _shown(value: object) -> str:
    """``value`` as text safe to print on a terminal: no control characters (an escape
    sequence from whatever answered at the address), and not too long."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."
