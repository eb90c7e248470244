"""Run ``pfs`` in this process, as the console script would, and keep what it printed:
what a user sees (its exit status, stdout and stderr), for tests."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

from pfs_volume.cli.main import main


@dataclass(frozen=True)
class CliResult:
    """What one ``pfs`` run left: its exit status, its output, and the exception that
    escaped ``main`` (None when it ended by returning or by ``sys.exit``)."""

    exit_code: int
    stdout_bytes: bytes
    stderr: str
    exception: BaseException | None

    @property
    def stdout(self) -> str:
        """Standard output as text."""
        return self.stdout_bytes.decode(errors="replace")

    @property
    def output(self) -> str:
        """Standard output, then standard error (for assertion messages)."""
        return self.stdout + self.stderr


def invoke(args: list[str], input: bytes | str = b"") -> CliResult:
    """Run ``pfs ARGS`` with ``input`` on standard input; what it left.

    An exception that escapes ``main`` (a bug: the CLI would print a traceback) is
    kept in ``exception`` with exit status 1, as Python's own would be.
    """
    stdin = io.BytesIO(input.encode() if isinstance(input, str) else input)
    stdout, stderr = io.BytesIO(), io.BytesIO()
    streams = sys.stdin, sys.stdout, sys.stderr
    # Held until the end: a wrapper that is collected closes the buffer under it.
    wrappers = (
        io.TextIOWrapper(stdin, encoding="utf-8"),
        io.TextIOWrapper(stdout, encoding="utf-8", write_through=True),
        io.TextIOWrapper(stderr, encoding="utf-8", write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = wrappers
    exception: BaseException | None = None
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        exception, code = exc, 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdin, sys.stdout, sys.stderr = streams
    result = CliResult(
        code, stdout.getvalue(), stderr.getvalue().decode(errors="replace"), exception
    )
    for wrapper in wrappers:
        wrapper.detach()
    return result
