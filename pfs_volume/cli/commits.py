"""``pfs log``, ``pfs commit``, ``pfs commit inspect``, ``pfs diff`` and ``pfs
provenance``: reading and making commits."""

from __future__ import annotations

import click

from pfs_volume.cli.options import api_client, json_option
from pfs_volume.cli.output import print_json, shown
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.names import DEFAULT_BRANCH, parse_ref, parse_repo_branch, parse_repo_ref


@click.command("log")
@click.argument("target", metavar="REPO[/BRANCH]|REPO@REF")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many commits.")
@click.option(
    "--first-parent", is_flag=True, help="Follow only first parents (the branch's own line)."
)
@json_option
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
    click.echo(
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


class _CommitGroup(click.Group):
    """``pfs commit REPO/BRANCH -m MSG`` commits; ``pfs commit inspect ...`` inspects."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group("commit", cls=_CommitGroup)
def commit() -> None:
    """Commits: pfs commit REPO/BRANCH -m MSG, or pfs commit inspect REPO@REF."""


@commit.command("create", hidden=True)
@click.argument("target", metavar="REPO/BRANCH")
@click.option("--message", "-m", default="", help="The commit message.")
@json_option
def commit_create(target: str, message: str, as_json: bool) -> None:
    """Commit what changed in a branch's working copy, also while containers use it."""
    repo_name, name = parse_repo_branch(target)
    result = api_client().commit(repo_name, name or DEFAULT_BRANCH, message)
    if as_json:
        print_json(result["commit"])
    elif result["commit"] is None:
        click.echo("nothing changed: no commit made")
    else:
        click.echo(f"committed {result['commit']['id']}")


@commit.command("inspect")
@click.argument("target", metavar="REPO@REF")
@json_option
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
        click.echo(f"{label:9} {value if value not in (None, '') else '-'}")
    click.echo(f"{'Holders:':9} {', '.join(info['holders']) or '-'}")
    if info.get("dead_holders"):
        click.echo(f"{'Down:':9} {', '.join(info['dead_holders'])} (holders not live now)")


@click.command("diff")
@click.argument("first", metavar="REPO@A")
@click.argument("second", metavar="[REPO@B]", required=False)
@json_option
def diff(first: str, second: str | None, as_json: bool) -> None:
    """What changed from A to B, or in A (against its parent) when B is not given."""
    repo_name, ref_a = parse_repo_ref(first)
    start, to = None, str(ref_a)
    if second is not None:
        other_repo, ref_b = parse_repo_ref(second)
        if other_repo != repo_name:
            raise click.UsageError("both refs must name the same repo")
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
        click.echo(f"{marks[change['kind']]}  {where}")


@click.command("provenance")
@click.argument("target", metavar="REPO@REF")
@json_option
def provenance(target: str, as_json: bool) -> None:
    """What produced a commit (upstream) and which commits it fed (downstream)."""
    repo_name, ref = parse_repo_ref(target)
    result = api_client().provenance(repo_name, str(ref))
    if as_json:
        print_json(result)
        return
    click.echo(f"commit {result['commit']}")
    click.echo("made from:")
    for item in result["upstream"] or ["(nothing: not a pipeline's output)"]:
        click.echo(f"  {item}")
    click.echo("fed into:")
    for item in result["downstream"] or ["(nothing yet)"]:
        click.echo(f"  {item}")
