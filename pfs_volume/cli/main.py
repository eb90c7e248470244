"""``pfs``: run the daemon (``pfs serve``) or talk to it (every other verb).

The root group is the one place a ``PfsError`` becomes ``pfs: error: ...`` on stderr and
exit status 1; the verbs live in a module per group of what ``pfs --help`` shows.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pfs_volume.cli.branches import branch
from pfs_volume.cli.cluster import doctor, mount, node
from pfs_volume.cli.commits import commit, diff, log_, provenance
from pfs_volume.cli.files import cat, get, ls, put, rm
from pfs_volume.cli.history import merge, reset, revert
from pfs_volume.cli.jobs import datum, job
from pfs_volume.cli.pipelines import pipeline, wait
from pfs_volume.cli.repos import gc, repo
from pfs_volume.cli.serve import serve
from pfs_volume.cli.transfer import repo_export, repo_import
from pfs_volume.config import DEFAULT_API_SOCKET
from pfs_volume.errors import PfsError


class PfsGroup(click.Group):
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


@click.group(cls=PfsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api",
    envvar="PFS_API",
    default=str(DEFAULT_API_SOCKET),
    show_default=True,
    help="The daemon's API: a unix socket path or an http:// URL (env PFS_API).",
)
@click.version_option(package_name="pfs")
def main(api: str) -> None:
    """pfs: every Docker volume a versioned data repository."""


repo.add_command(repo_export)
repo.add_command(repo_import)
for verb in (
    serve,
    repo,
    gc,
    branch,
    reset,
    revert,
    merge,
    log_,
    commit,
    diff,
    provenance,
    ls,
    cat,
    get,
    put,
    rm,
    pipeline,
    wait,
    job,
    datum,
    node,
    mount,
    doctor,
):
    main.add_command(verb)
