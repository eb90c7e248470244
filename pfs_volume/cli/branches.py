"""``pfs branch create|list|delete``."""

from __future__ import annotations

from pfs_volume.cli.commands import Group, arg
from pfs_volume.cli.options import JSON, api_client, repo_and_branch
from pfs_volume.cli.output import gone, print_json, show
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.errors import UsageError
from pfs_volume.names import parse_ref, parse_repo_branch

branch = Group("branch", "Branches: create, list, delete.")


@branch.command("create")
@arg("target", metavar="REPO/NEW")
@arg("--from", dest="start", metavar="REF", help="Start at this ref (default: master).")
@JSON
def branch_create(target: str, start: str | None, as_json: bool) -> None:
    """Create a branch at a ref (a branch, a commit id or prefix, REF~N)."""
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise UsageError(f"{target!r} names no branch; give REPO/NEW")
    start_ref = None if start is None else str(parse_ref(start))
    result = api_client().create_branch(repo_name, name, start_ref)
    show(result, as_json, f"created branch {repo_name}/{name} at {short_id(result['head'])}")


@branch.command("delete")
@arg("target", metavar="REPO/BRANCH")
@arg(
    "--force",
    action="store_true",
    help="Delete the pipelines that read or write it too (jobs stop).",
)
@JSON
def branch_delete(target: str, force: bool, as_json: bool) -> None:
    """Delete a branch (refused while mounted, or while pipelines read or write it
    unless --force); its commits stay reachable by id."""
    repo_name, name = repo_and_branch(target)
    result = api_client().delete_branch(repo_name, name, force)
    show(result, as_json, f"deleted branch {result['deleted']}" + gone(result))


@branch.command("list")
@arg("repo_name", metavar="REPO")
@JSON
def branch_list(repo_name: str, as_json: bool) -> None:
    """List a repo's branches with their heads."""
    branches = api_client().list_branches(repo_name)
    if as_json:
        print_json(branches)
        return
    print(
        table(
            ["branch", "head", "created"],
            [[b["name"], short_id(b["head"]), when(b["created"])] for b in branches],
        )
    )
