"""``pfs repo create|list|inspect|delete`` and ``pfs gc``."""

from __future__ import annotations

import sys

from pfs_volume.cli.argtypes import whole_number
from pfs_volume.cli.commands import Group, arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import confirm, gone, print_json, show
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.errors import UsageError

TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from typing import Any

repo = Group(
    "repo",
    "Repos: list, inspect, delete.",
    {
        "export": "pfs_volume.cli.transfer:repo_export",
        "import": "pfs_volume.cli.transfer:repo_import",
    },
)


@repo.command("create")
@arg("name")
@arg("--description", "-d", default="", help="What the repo holds.")
@arg(
    "--replicas",
    type=whole_number(1),
    metavar="N",
    help="Copies of each commit in a cluster (default: the node's --replicas).",
)
@JSON
def repo_create(name: str, description: str, replicas: int | None, as_json: bool) -> None:
    """Create an empty repo (mounting a volume of a new repo does this too)."""
    result = api_client().create_repo(name, description, replicas)
    placed = f" on {', '.join(result['placement'])}" if result["placement"] else ""
    show(result, as_json, f"created repo {result['name']}{placed}")


@repo.command("list")
@JSON
def repo_list(as_json: bool) -> None:
    """List repos."""
    repos = api_client().list_repos()
    if as_json:
        print_json(repos)
        return
    print(
        table(
            ["repo", "created", "description"],
            [[r["name"], when(r["created"]), r["description"]] for r in repos],
        )
    )


@repo.command("inspect")
@arg("name")
@JSON
def repo_inspect(name: str, as_json: bool) -> None:
    """Show a repo: branches with their heads, commit count, active mounts."""
    info = api_client().inspect_repo(name)
    if as_json:
        print_json(info)
        return
    print(f"Repo:     {info['name']}")
    print(f"Created:  {when(info['created'])}")
    print(f"Commits:  {info['commit_count']}")
    print(f"Size:     {_size_text(info)}")
    print(f"Mounts:   {len(info['mounts'])}")
    print("")
    print(table(["branch", "head"], [[b["name"], short_id(b["head"])] for b in info["branches"]]))


@repo.command("delete")
@arg("name")
@arg("--yes", action="store_true", help="Do not ask for confirmation.")
@arg(
    "--force",
    action="store_true",
    help="Delete the pipelines that read or write it too (jobs stop).",
)
@JSON
def repo_delete(name: str, yes: bool, force: bool, as_json: bool) -> None:
    """Delete a repo and ALL its data (refused while a volume of it is mounted, or
    while pipelines read or write it unless --force)."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("deleting a repo needs --yes when not run on a terminal")
        also = " and every pipeline that uses it" if force else ""
        confirm(f"Delete repo {name} with all its commits and data{also}?")
    result = api_client().delete_repo(name, force)
    show(result, as_json, f"deleted repo {result['deleted']}" + gone(result))


@command("gc")
@arg("repo_name", metavar="REPO")
@arg("--keep-last", type=whole_number(0), metavar="N", help="Keep the N newest commits.")
@arg("--older-than", metavar="DURATION", help="Prune only commits older than this (e.g. 30d, 12h).")
@JSON
def gc(repo_name: str, keep_last: int | None, older_than: str | None, as_json: bool) -> None:
    """Delete the data of old commits that no branch head is; they stay in the log,
    marked pruned. Also deletes every pipeline's kept datum outputs that no job can
    reuse."""
    result = api_client().gc(repo_name, keep_last, older_than)
    show(
        result,
        as_json,
        f"pruned {len(result['pruned'])} commit(s), about "
        f"{result['bytes_freed'] / 1024**2:.1f} MiB freed; "
        f"{result.get('datum_outputs_freed', 0)} unused datum output(s) of pipelines deleted",
    )


def _size_text(info: dict[str, Any]) -> str:
    """The repo's size line: what its kept commits wrote, and what is not counted yet."""
    if info.get("size") is None:
        return "unknown (a repo from before pfs kept sizes)"
    text = f"{info['size'] / 1024**2:,.1f} MiB written by its kept commits"
    unmeasured = info.get("size_unmeasured_commits") or 0
    return text + (f" ({unmeasured} commit(s) not measured)" if unmeasured else "")
