"""``pfs --version``: the CLI's version, and the version of the daemon it talks to.

The CLI's version is always printed and the exit status is 0 even when no daemon
answers: the option reports what is installed, and says so when the daemon cannot be
reached (like ``docker --version``, it is no health check; ``pfs doctor`` is).
"""

from __future__ import annotations

import json

from pfs_volume import package_version
from pfs_volume.cli.connection import send

HEALTH = "/v1/health"
"""Asked directly, not through ``ApiClient``: its answer while the daemon starts (503,
with the version and the step) is what ``--version`` shows, not an error to raise."""
HEALTH_TIMEOUT = 5.0
"""Seconds ``--version`` waits for the daemon: it says "not reachable" after that."""


def version_lines(address: str) -> list[str]:
    """What ``pfs --version`` prints: the CLI's version, then the daemon's at ``address``
    (a unix socket path or an ``http://`` URL), or why it is not known."""
    lines = [f"pfs {package_version()} (CLI)"]
    try:
        with send(address, "GET", HEALTH, {}, None, {}, HEALTH_TIMEOUT) as answer:
            status, content = answer.status_code, answer.content
    except OSError as exc:
        return [*lines, f"daemon: not reachable at {address} ({exc.__class__.__name__}: {exc})"]
    try:
        body = json.loads(content)
        version = str(body["version"])
    except (ValueError, KeyError, TypeError):
        return [*lines, f"daemon: at {address}, answered {status} without a version"]
    words = f"daemon {version} at {address}"
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else f"HTTP {status}"
        words += f" ({message})"
    return [*lines, words]
