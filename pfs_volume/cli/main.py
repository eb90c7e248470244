"""``pfs``: run the daemon (``pfs serve``) or talk to it (every other verb).

``main`` is the one place a ``PfsError`` becomes ``pfs: error: ...`` on stderr and exit
status 1; the verbs live in a module per group of what ``pfs --help`` shows.
"""

from __future__ import annotations

import argparse
import os
import sys

from pfs_volume.cli.argtypes import api_address
from pfs_volume.cli.commands import Group, run
from pfs_volume.cli.options import use_api
from pfs_volume.errors import PfsError

DEFAULT_API = "/run/pfs/api.sock"
"""``config.DEFAULT_API_SOCKET``, spelled out: importing the daemon's configuration (its
parsers, ``datetime``, ``pathlib``) would slow every verb (a unit test holds them equal)."""

VERBS = {
    name: f"pfs_volume.cli.{where}"
    for name, where in {
        "serve": "serve:serve",
        "repo": "repos:repo",
        "gc": "repos:gc",
        "branch": "branches:branch",
        "reset": "history:reset",
        "revert": "history:revert",
        "merge": "history:merge",
        "log": "commits:log_",
        "commit": "commits:commit",
        "diff": "commits:diff",
        "provenance": "commits:provenance",
        "ls": "files:ls",
        "cat": "files:cat",
        "get": "files:get",
        "put": "files:put",
        "rm": "files:rm",
        "pipeline": "pipelines:pipeline",
        "wait": "pipelines:wait",
        "job": "jobs:job",
        "datum": "jobs:datum",
        "node": "cluster:node",
        "mount": "cluster:mount",
        "doctor": "cluster:doctor",
        "fsck": "fsck:fsck",
    }.items()
}
"""Each verb of ``pfs`` and where it is defined: only the verb that runs is imported."""


class VersionAction(argparse.Action):
    """``--version``: print the CLI's version and the daemon's (``cli.version``), and exit
    0; the daemon is the one ``--api`` names when given before ``--version``, else
    PFS_API, else the default."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from pfs_volume.cli.version import version_lines

        address = getattr(namespace, "api", None) or os.environ.get("PFS_API") or DEFAULT_API
        for line in version_lines(address):
            print(line)
        parser.exit(0)


PFS = Group(
    "pfs",
    "pfs: every Docker volume a versioned data repository.",
    VERBS,
    options=[
        (
            ("--api",),
            {
                "env": "PFS_API",
                "default": DEFAULT_API,
                "type": api_address,
                "metavar": "PATH|URL",
                "help": "The daemon's API: a unix socket path or an http:// URL "
                "(env PFS_API; default %(default)s).",
            },
        ),
        (
            ("--version",),
            {
                "action": VersionAction,
                "nargs": 0,
                "default": argparse.SUPPRESS,
                "help": "Show the CLI's version and that of the daemon it talks to, and exit.",
            },
        ),
    ],
    setup=use_api,
)
"""The root command."""


def main(argv: list[str] | None = None) -> int:
    """Run ``pfs`` with ``argv`` (default: the process's arguments); the exit status.

    A ``PfsError`` is printed on stderr as ``pfs: error: MESSAGE`` (status 1); Ctrl-C
    prints ``Aborted!`` (status 1). A reader that goes away (``pfs log | head``) ends
    it quietly with status 1, as click did: no traceback, no "Exception ignored".
    """
    try:
        try:
            return run(PFS, sys.argv[1:] if argv is None else argv)
        except PfsError as exc:
            print(f"pfs: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nAborted!", file=sys.stderr)
            return 1
        finally:  # here, not at exit: what is still buffered may meet a closed pipe too
            if sys.stdout is not None:  # None: started with standard output closed
                sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return 1


def _stdout_to_devnull() -> None:
    """Point standard output's file descriptor at /dev/null, so that what Python still
    holds for it is flushed there at exit instead of failing again (the recipe of the
    ``signal`` module's documentation, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (a test's buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
