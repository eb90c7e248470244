"""``pfs log``, ``pfs commit``, ``pfs commit inspect``, ``pfs diff`` and ``pfs
provenance``: reading and making commits."""

from __future__ import annotations

from pfs_volume.cli.argtypes import whole_number
from pfs_volume.cli.commands import Group, arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import print_json, shown
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.errors import UsageError
from pfs_volume.names import DEFAULT_BRANCH, parse_ref, parse_repo_branch, parse_repo_ref


@command("log")
@arg("target", metavar="REPO[/BRANCH]|REPO@REF")
@arg("--limit", type=whole_number(1), metavar="N", help="Show at most this many commits.")
@arg(
    "--first-parent",
    action="store_true",
    help="Follow only first parents (the branch's own line).",
)
@JSON
def log_(target: str, limit: int | None, first_parent: bool, as_json: bool) -> None:
    """Show commits, newest first, from a branch head (master by default) or a ref, with
    what merges brought (REF~N follows first parents, REF^2 a merge's second)."""
    if "@" in target:
        repo_name, ref = parse_repo_ref(target)
    else:
        repo_name, branch_name = parse_repo_branch(target)
        ref = parse_ref(branch_name or DEFAULT_BRANCH)
    commits = api_client().log(repo_name, str(ref), limit, first_parent)
    if as_json:
        print_json(commits)
        return
    print(
        table(
            ["commit", "parents", "branch", "created", "origin", "message"],
            [
                [
                    short_id(c["id"]) + (" (pruned)" if c["pruned"] else ""),
                    " ".join(short_id(p) for p in c["parents"]) or short_id(None),
                    c["branch"],
                    when(c["created"]),
                    c["origin"],
                    c["message"],
                ]
                for c in commits
            ],
        )
    )


commit = Group(
    "commit",
    "Commits: pfs commit REPO/BRANCH -m MSG, or pfs commit inspect REPO@REF.",
    # ``pfs commit REPO/BRANCH -m MSG`` commits; ``pfs commit inspect ...`` inspects.
    default="create",
)


@commit.command("create", hidden=True)
@arg("target", metavar="REPO/BRANCH")
@arg("--message", "-m", default="", help="The commit message.")
@JSON
def commit_create(target: str, message: str, as_json: bool) -> None:
    """Commit what changed in a branch's working copy, also while containers use it."""
    repo_name, name = parse_repo_branch(target)
    result = api_client().commit(repo_name, name or DEFAULT_BRANCH, message)
    if as_json:
        print_json(result["commit"])
    elif result["commit"] is None:
        print("nothing changed: no commit made")
    else:
        print(f"committed {result['commit']['id']}")


@commit.command("inspect")
@arg("target", metavar="REPO@REF")
@JSON
def commit_inspect(target: str, as_json: bool) -> None:
    """Show one commit (REF: a branch, a commit id or prefix, optionally ~N)."""
    repo_name, ref = parse_repo_ref(target)
    info = api_client().inspect_commit(repo_name, str(ref))
    if as_json:
        print_json(info)
        return
    for key in (
        "id",
        "parents",
        "repo",
        "branch",
        "created",
        "origin",
        "message",
        "size",
        "files_changed",
        "pruned",
        "copies",
    ):
        label = key.replace("_", " ").capitalize() + ":"
        value = " ".join(info[key]) if isinstance(info[key], list) else info[key]
        print(f"{label:9} {value if value not in (None, '') else '-'}")
    print(f"{'Holders:':9} {', '.join(info['holders']) or '-'}")
    if info.get("dead_holders"):
        print(f"{'Down:':9} {', '.join(info['dead_holders'])} (holders not live now)")


@command("diff")
@arg("first", metavar="REPO@A")
@arg("second", metavar="REPO@B", nargs="?")
@JSON
def diff(first: str, second: str | None, as_json: bool) -> None:
    """What changed from A to B, or in A (against its parent) when B is not given."""
    repo_name, ref_a = parse_repo_ref(first)
    start, to = None, str(ref_a)
    if second is not None:
        other_repo, ref_b = parse_repo_ref(second)
        if other_repo != repo_name:
            raise UsageError("both refs must name the same repo")
        start, to = str(ref_a), str(ref_b)
    result = api_client().diff(repo_name, to, start)
    if as_json:
        print_json(result)
        return
    marks = {"added": "A", "modified": "M", "deleted": "D", "renamed": "R"}
    for change in result["changes"]:
        where = shown(change, "path")
        if change["kind"] == "renamed":
            where = f"{shown(change, 'old_path')} -> {where}"
            if change["modified"]:
                where += " (modified)"
        print(f"{marks[change['kind']]}  {where}")


@command("provenance")
@arg("target", metavar="REPO@REF")
@JSON
def provenance(target: str, as_json: bool) -> None:
    """What produced a commit (upstream) and which commits it fed (downstream)."""
    repo_name, ref = parse_repo_ref(target)
    result = api_client().provenance(repo_name, str(ref))
    if as_json:
        print_json(result)
        return
    print(f"commit {result['commit']}")
    print("made from:")
    for item in result["upstream"] or ["(nothing: not a pipeline's output)"]:
        print(f"  {item}")
    print("fed into:")
    for item in result["downstream"] or ["(nothing yet)"]:
        print(f"  {item}")
