"""Crash and pause injection for tests of crash safety and fencing.

``PFS_FAILPOINTS=commit.after_snapshot`` (comma-separated names) makes the daemon die at
that point exactly as ``kill -9`` would: no cleanup, no flush, no reply.
``NAME=stop`` instead stops the daemon there with SIGSTOP, once, as if the machine
froze; a test resumes it with SIGCONT. ``NAME=hold`` holds only the thread that reaches
it (the daemon's other threads go on serving): it writes ``NAME.held`` in the folder
PFS_FAILPOINTS_HOLD_DIR names, then waits until a file ``NAME`` appears there. Unset, a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ENV = "PFS_FAILPOINTS"
HOLD_DIR_ENV = "PFS_FAILPOINTS_HOLD_DIR"
HOLD_POLL = 0.05
"""Seconds between looks for the file that releases a held thread."""
KILLED_EXIT = 137
_fired: set[str] = set()
_guard = threading.Lock()


def failpoint(name: str) -> None:
    """Die (or stop, for ``NAME=stop``) at once when ``name`` is armed in PFS_FAILPOINTS."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    entries = armed.split(",")
    if name in entries:
        os._exit(KILLED_EXIT)
    if f"{name}=hold" in entries:
        _hold(name)
    if f"{name}=stop" in entries:
        with _guard:
            if name in _fired:
                return
            _fired.add(name)
        # To this thread: it stops before it runs another line. Sent to the process,
        # the stop may be taken by another thread while this one writes on (a put was
        # seen staging its whole upload first).
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def _hold(name: str) -> None:
    """Say that this thread reached ``name``, then wait until a test releases it."""
    folder = Path(os.environ[HOLD_DIR_ENV])
    (folder / f"{name}.held").touch()
    while not (folder / name).exists():
        time.sleep(HOLD_POLL)
