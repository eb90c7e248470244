"""Running the storage tools: argument lists, never a shell; stderr in every error."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from pfs_volume.errors import BtrfsCommandError

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 600.0
"""Seconds any one storage command may take (mkfs of a large image is the slow one)."""


def run_command(args: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """Run one command and return its stdout.

    Args:
        args: the program and its arguments.
        timeout: seconds before the command is killed.
    Returns:
        The command's standard output, decoded.
    Raises:
        BtrfsCommandError: when it exits non-zero or cannot be started.
    """
    log.debug("running %s", args)
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=True
        )
    except subprocess.CalledProcessError as exc:
        raise BtrfsCommandError(args, exc.returncode, exc.stderr or "") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BtrfsCommandError(args, -1, str(exc)) from exc
    return done.stdout
