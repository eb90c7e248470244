"""``pfs node list``, ``pfs mount list|release`` and ``pfs doctor``: the nodes, the
mounts Docker holds, and what is stuck."""

from __future__ import annotations

import sys

from pfs_volume.cli.commands import Group, arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import print_json, show
from pfs_volume.cli.tables import short_id, table, when

node = Group("node", "Nodes of the cluster: list.")


@node.command("list")
@JSON
def node_list(as_json: bool) -> None:
    """List the live nodes: id, API address, state, free and total pool space."""
    nodes = api_client().list_nodes()
    if as_json:
        print_json(nodes)
        return
    print(
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


mount = Group("mount", "Docker mounts of pfs volumes: list, release.")


@mount.command("list")
@arg(
    "--stale",
    action="store_true",
    help="Only mounts no container of the Docker engine holds (pfs mount release fixes them).",
)
@JSON
def mount_list(stale: bool, as_json: bool) -> None:
    """List the mounts Docker holds (one per container using a volume)."""
    mounts = api_client().list_mounts(stale)
    if as_json:
        print_json(mounts)
        return
    print(
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
@arg("mount_id", metavar="MOUNT_ID")
@JSON
def mount_release(mount_id: str, as_json: bool) -> None:
    """Release a mount whose container is gone but Docker never unmounted (after a
    crash): as Docker's Unmount would, the last mount of a branch commits."""
    result = api_client().release_mount(mount_id)
    show(result, as_json, f"released mount {result['released']}")


@command("doctor")
@JSON
def doctor(as_json: bool) -> None:
    """Show stuck or suspicious state (mounts no container holds, uncommitted working
    copies, a full pool, a changed driver name), each with the command that fixes it.
    Changes nothing. Exits 1 when something needs doing."""
    findings = api_client().doctor()
    if as_json:
        print_json(findings)
    elif not findings:
        print("nothing stuck or suspicious")
    for finding in [] if as_json else findings:
        print(f"{finding['severity'].upper():8}{finding['what']}")
        if finding["fix"]:
            print(f"{'':8}fix: {finding['fix']}")
    if any(f["severity"] in ("error", "warning") for f in findings):
        sys.exit(1)
