"""Crash injection for tests of crash safety.

``PFS_FAILPOINTS=commit.after_snapshot`` (comma-separated names) makes the daemon die at
that point exactly as ``kill -9`` would: no cleanup, no flush, no reply. Unset, a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os

ENV = "PFS_FAILPOINTS"
KILLED_EXIT = 137


def failpoint(name: str) -> None:
    """Die at once when ``name`` is armed in ``PFS_FAILPOINTS``."""
    armed = os.environ.get(ENV)
    if armed and name in armed.split(","):
        os._exit(KILLED_EXIT)
