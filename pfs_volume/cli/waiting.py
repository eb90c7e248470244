"""Waiting on the daemon (``pfs wait``, ``pfs job wait``) in requests it may hold
open for a while, with exit status 2 when the caller's ``--timeout`` runs out."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from pfs_volume.cli.argtypes import seconds
from pfs_volume.cli.commands import arg
from pfs_volume.cli.output import note

TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from typing import Any

WAIT_TIMEOUT = arg(
    "--timeout",
    type=seconds,
    metavar="SECONDS",
    help="Give up after this long (exit 2). Default: wait as long as it takes.",
)
WAIT_SLICE = 30.0
"""Seconds one wait request may block on the daemon (its limit)."""
WAIT_PAUSE = 1.0
"""Seconds between the starts of two wait requests when the daemon answers at once."""


def wait_until(
    ask: Callable[[float], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float | None,
    what: str,
) -> dict[str, Any]:
    """Ask the daemon until ``done``, each request blocking up to WAIT_SLICE seconds.

    Args:
        ask: one request, given the seconds it may block; returns the answer.
        done: whether an answer is the end of the wait.
        timeout: seconds to wait in all, None for as long as it takes.
        what: what is waited for, as the message on giving up names it.
    Returns:
        The first answer that is ``done``.
    Raises:
        SystemExit: (status 2) ``timeout`` ran out first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAIT_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
        asked = time.monotonic()
        result = ask(min(WAIT_SLICE, left))
        if done(result):
            return result
        if deadline is not None and time.monotonic() >= deadline:
            note(f"pfs: {what} is not done after {timeout:g} s")
            sys.exit(2)
        # Answered at once, not done: the daemon serves its most waits already. Ask
        # again after a pause, never in a tight loop on its socket.
        pause = WAIT_PAUSE - (time.monotonic() - asked)
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
        if pause > 0:
            time.sleep(pause)
