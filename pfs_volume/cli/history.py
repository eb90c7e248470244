"""``pfs reset``, ``pfs revert`` and ``pfs merge``: moving a branch's history."""

from __future__ import annotations

from pfs_volume.cli.commands import arg, command
from pfs_volume.cli.options import JSON, api_client, repo_and_branch
from pfs_volume.cli.output import print_commit, show
from pfs_volume.cli.tables import short_id
from pfs_volume.names import parse_ref


@command("reset")
@arg("target", metavar="REPO/BRANCH")
@arg("ref", metavar="REF")
@JSON
def reset(target: str, ref: str, as_json: bool) -> None:
    """Move a branch's head to REF (refused while mounted); the old head stays
    reachable by its id."""
    repo_name, name = repo_and_branch(target)
    result = api_client().reset_branch(repo_name, name, str(parse_ref(ref)))
    show(
        result,
        as_json,
        f"{repo_name}/{name}: {short_id(result['old_head'])} -> {short_id(result['head'])}",
    )


@command("revert")
@arg("target", metavar="REPO/BRANCH")
@arg("commit_ref", metavar="COMMIT")
@JSON
def revert(target: str, commit_ref: str, as_json: bool) -> None:
    """Make a new commit on a branch that undoes COMMIT's changes."""
    repo_name, name = repo_and_branch(target)
    result = api_client().revert(repo_name, name, str(parse_ref(commit_ref)))
    print_commit(result["commit"], as_json)


@command("merge")
@arg("source", metavar="REPO/SRC")
@arg("--into", dest="target", required=True, metavar="DST", help="The branch to merge into.")
@arg(
    "--strategy",
    choices=["ours", "theirs"],
    help="Settle every conflict: keep DST's version (ours) or SRC's (theirs).",
)
@JSON
def merge(source: str, target: str, strategy: str | None, as_json: bool) -> None:
    """Merge branch SRC into DST: fast-forward when possible, else file by file."""
    repo_name, name = repo_and_branch(source)
    result = api_client().merge(repo_name, target, name, strategy)
    show(
        result,
        as_json,
        f"{result['outcome']}: {repo_name}/{target} is at {short_id(result['head'])}",
    )
