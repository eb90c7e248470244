"""``pfs``: run the daemon (``pfs serve``) or talk to it (every other verb).

The root group is the one place a ``PfsError`` becomes ``pfs: error: ...`` on stderr and
exit status 1; the verbs live in a module per group of what ``pfs --help`` shows.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pfs_volume import __version__
from pfs_volume.cli.lazy import LazyGroup
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


class PfsGroup(LazyGroup):
    """The root group: runs a verb and reports the ``PfsError`` it raises."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the verb ``ctx`` names.

        Raises:
            SystemExit: (status 1) the verb raised a ``PfsError``, printed on stderr as
                ``pfs: error: MESSAGE``.
        """
        try:
            return super().invoke(ctx)
        except PfsError as exc:
            click.echo(f"pfs: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=PfsGroup, lazy=VERBS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api",
    envvar="PFS_API",
    default=DEFAULT_API,
    show_default=True,
    help="The daemon's API: a unix socket path or an http:// URL (env PFS_API).",
)
# The version pfs_volume carries (a unit test holds it to the installed package's):
# reading the package metadata costs importlib.metadata, about 25 ms here.
@click.version_option(__version__, package_name="pfs")
def main(api: str) -> None:
    """pfs: every Docker volume a versioned data repository."""
