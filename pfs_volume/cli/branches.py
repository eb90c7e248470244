"""``pfs branch create|list|delete``."""

from __future__ import annotations

import click

from pfs_volume.cli.options import api_client, json_option, repo_and_branch
from pfs_volume.cli.output import gone, print_json, show
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.names import parse_ref, parse_repo_branch


@click.group("branch")
def branch() -> None:
    """Branches: create, list, delete."""


@branch.command("create")
@click.argument("target", metavar="REPO/NEW")
@click.option("--from", "start", metavar="REF", help="Start at this ref (default: master).")
@json_option
def branch_create(target: str, start: str | None, as_json: bool) -> None:
    """Create a branch at a ref (a branch, a commit id or prefix, REF~N)."""
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise click.UsageError(f"{target!r} names no branch; give REPO/NEW")
    start_ref = None if start is None else str(parse_ref(start))
    result = api_client().create_branch(repo_name, name, start_ref)
    show(result, as_json, f"created branch {repo_name}/{name} at {short_id(result['head'])}")


@branch.command("delete")
@click.argument("target", metavar="REPO/BRANCH")
@click.option(
    "--force", is_flag=True, help="Delete the pipelines that read or write it too (jobs stop)."
)
@json_option
def branch_delete(target: str, force: bool, as_json: bool) -> None:
    """Delete a branch (refused while mounted, or while pipelines read or write it
    unless --force); its commits stay reachable by id."""
    repo_name, name = repo_and_branch(target)
    result = api_client().delete_branch(repo_name, name, force)
    show(result, as_json, f"deleted branch {result['deleted']}" + gone(result))


@branch.command("list")
@click.argument("repo_name", metavar="REPO")
@json_option
def branch_list(repo_name: str, as_json: bool) -> None:
    """List a repo's branches with their heads."""
    branches = api_client().list_branches(repo_name)
    if as_json:
        print_json(branches)
        return
    click.echo(
        table(
            ["branch", "head", "created"],
            [[b["name"], short_id(b["head"]), when(b["created"])] for b in branches],
        )
    )
