"""``pfs node list``, ``pfs mount list|release`` and ``pfs doctor``: the nodes, the
mounts Docker holds, and what is stuck."""

from __future__ import annotations

import sys

import click

from pfs_volume.cli.options import api_client, json_option
from pfs_volume.cli.output import print_json, show
from pfs_volume.cli.tables import short_id, table, when


@click.group("node")
def node() -> None:
    """Nodes of the cluster: list."""


@node.command("list")
@json_option
def node_list(as_json: bool) -> None:
    """List the live nodes: id, API address, state, free and total pool space."""
    nodes = api_client().list_nodes()
    if as_json:
        print_json(nodes)
        return
    click.echo(
        table(
            ["node", "address", "state", "free", "pool", "since"],
            [
                [
                    n["id"],
                    n["address"],
                    n["state"],
                    f"{n['free_bytes'] / 1024**3:,.1f} GiB",
                    f"{n['pool_bytes'] / 1024**3:,.1f} GiB",
                    when(n["started"]),
                ]
                for n in nodes
            ],
        )
    )


@click.group("mount")
def mount() -> None:
    """Docker mounts of pfs volumes: list, release."""


@mount.command("list")
@click.option(
    "--stale",
    is_flag=True,
    help="Only mounts no container of the Docker engine holds (pfs mount release fixes them).",
)
@json_option
def mount_list(stale: bool, as_json: bool) -> None:
    """List the mounts Docker holds (one per container using a volume)."""
    mounts = api_client().list_mounts(stale)
    if as_json:
        print_json(mounts)
        return
    click.echo(
        table(
            ["mount", "volume", "repo", "branch", "commit", "since"],
            [
                [
                    m["id"][:12],
                    m["volume"],
                    m["repo"],
                    m["branch"],
                    short_id(m["commit"]),
                    when(m["created"]),
                ]
                for m in mounts
            ],
        )
    )


@mount.command("release")
@click.argument("mount_id", metavar="MOUNT_ID")
@json_option
def mount_release(mount_id: str, as_json: bool) -> None:
    """Release a mount whose container is gone but Docker never unmounted (after a
    crash): as Docker's Unmount would, the last mount of a branch commits."""
    result = api_client().release_mount(mount_id)
    show(result, as_json, f"released mount {result['released']}")


@click.command("doctor")
@json_option
def doctor(as_json: bool) -> None:
    """Show stuck or suspicious state (mounts no container holds, uncommitted working
    copies, a full pool, a changed driver name), each with the command that fixes it.
    Changes nothing. Exits 1 when something needs doing."""
    findings = api_client().doctor()
    if as_json:
        print_json(findings)
    elif not findings:
        click.echo("nothing stuck or suspicious")
    for finding in [] if as_json else findings:
        click.echo(f"{finding['severity'].upper():8}{finding['what']}")
        if finding["fix"]:
            click.echo(f"{'':8}fix: {finding['fix']}")
    if any(f["severity"] in ("error", "warning") for f in findings):
        sys.exit(1)
