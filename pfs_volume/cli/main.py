"""``pfs``: run the daemon (``pfs serve``) or talk to it (every other verb)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import tarfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote

import click

from pfs_volume.cli.client import ApiClient
from pfs_volume.cli.tables import short_id, table, when
from pfs_volume.cli.unpack import unpack
from pfs_volume.config import (
    DEFAULT_API_SOCKET,
    DEFAULT_DRIVER_NAME,
    DEFAULT_MAX_JOBS,
    DEFAULT_POOL_SIZE,
    DEFAULT_RECONCILE_GRACE,
    DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_STATE_DIR,
    PLUGIN_DIR,
    Settings,
    parse_endpoints,
    parse_size,
)
from pfs_volume.errors import PfsError
from pfs_volume.filenames import from_wire, printable
from pfs_volume.names import DEFAULT_BRANCH, parse_ref, parse_repo_branch, parse_repo_ref

F = TypeVar("F", bound=Callable[..., Any])

CHUNK = 1024 * 1024
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def reports_errors(func: F) -> F:
    """Turn a PfsError into ``pfs: error: ...`` on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PfsError as exc:
            click.echo(f"pfs: error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def json_option(func: F) -> F:
    """Add ``--json``: print the API's JSON instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _client() -> ApiClient:
    return ApiClient(click.get_current_context().find_root().params["api"])


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _show(value: Any, as_json: bool, text: str) -> None:
    """Print ``value`` as JSON with --json, else the line ``text``."""
    if as_json:
        _print_json(value)
    else:
        click.echo(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


@main.command()
@click.option(
    "--state-dir",
    envvar="PFS_STATE_DIR",
    default=str(DEFAULT_STATE_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the pool and metadata live (env PFS_STATE_DIR).",
)
@click.option(
    "--pool-size",
    envvar="PFS_POOL_SIZE",
    default=DEFAULT_POOL_SIZE,
    show_default=True,
    help="Size of the sparse pool image made when the state dir is not on btrfs "
    "(env PFS_POOL_SIZE).",
)
@click.option(
    "--driver-name",
    envvar="PFS_DRIVER_NAME",
    default=DEFAULT_DRIVER_NAME,
    show_default=True,
    help="Docker volume driver name; also the volume-name prefix (env PFS_DRIVER_NAME).",
)
@click.option(
    "--api-socket",
    envvar="PFS_API_SOCKET",
    default=str(DEFAULT_API_SOCKET),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Unix socket of the pfs HTTP API (env PFS_API_SOCKET).",
)
@click.option(
    "--plugin-dir",
    envvar="PFS_PLUGIN_DIR",
    default=str(PLUGIN_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the plugin socket DRIVER_NAME.sock: Docker looks in the default one; "
    "another serves only clients that call the plugin protocol themselves, such as "
    "tests (env PFS_PLUGIN_DIR).",
)
@click.option(
    "--log-level",
    envvar="PFS_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--etcd",
    envvar="PFS_ETCD",
    default="",
    metavar="URL[,URL...]",
    help="Join a cluster coordinated by these etcd endpoints (env PFS_ETCD); without it "
    "the node keeps its metadata in the pool (SQLite).",
)
@click.option(
    "--node-id",
    envvar="PFS_NODE_ID",
    default=socket.gethostname(),
    show_default="the host name",
    help="This node's id in the cluster (env PFS_NODE_ID).",
)
@click.option(
    "--advertise",
    envvar="PFS_ADVERTISE",
    default="",
    metavar="http://HOST:PORT",
    help="Where peers reach this node's API; it is served there (env PFS_ADVERTISE).",
)
@click.option(
    "--cluster-token",
    envvar="PFS_CLUSTER_TOKEN",
    default="",
    help="Shared secret of the cluster's nodes (env PFS_CLUSTER_TOKEN).",
)
@click.option(
    "--replicas",
    envvar="PFS_REPLICAS",
    default=2,
    show_default=True,
    type=int,
    help="Copies of each commit a new repo keeps (env PFS_REPLICAS).",
)
@click.option(
    "--docker-host",
    envvar="PFS_DOCKER_HOST",
    default="",
    metavar="URL",
    help="The Docker engine pfs serves: pipelines run their containers there, and mount "
    "records are reconciled with its containers (env PFS_DOCKER_HOST; default: "
    "DOCKER_HOST, else the local engine).",
)
@click.option(
    "--reconcile-interval",
    envvar="PFS_RECONCILE_INTERVAL",
    default=DEFAULT_RECONCILE_INTERVAL,
    show_default=True,
    type=float,
    metavar="SECONDS",
    help="How often mount records are checked against the engine's containers; a record "
    "no container holds is released as Docker's Unmount would be, committing what changed. "
    "0 turns it off: do that when several engines share this host's pfs socket "
    "(env PFS_RECONCILE_INTERVAL).",
)
@click.option(
    "--reconcile-grace",
    envvar="PFS_RECONCILE_GRACE",
    default=DEFAULT_RECONCILE_GRACE,
    show_default=True,
    type=float,
    metavar="SECONDS",
    help="How long a new mount record counts as held by a container that is not running "
    "yet (Docker mounts before it starts) (env PFS_RECONCILE_GRACE).",
)
@click.option(
    "--max-jobs",
    envvar="PFS_MAX_JOBS",
    default=DEFAULT_MAX_JOBS,
    show_default=True,
    type=int,
    help="Pipeline jobs this node runs at once, across its pipelines; each pipeline runs "
    "one job at a time (env PFS_MAX_JOBS).",
)
@click.option(
    "--lease-ttl",
    envvar="PFS_LEASE_TTL",
    default=10,
    show_default=True,
    type=int,
    help="Seconds a silent node stays a member (env PFS_LEASE_TTL).",
)
@reports_errors
def serve(
    state_dir: Path,
    pool_size: str,
    driver_name: str,
    api_socket: Path,
    plugin_dir: Path,
    log_level: str,
    etcd: str,
    node_id: str,
    advertise: str,
    cluster_token: str,
    replicas: int,
    lease_ttl: int,
    docker_host: str,
    reconcile_interval: float,
    reconcile_grace: float,
    max_jobs: int,
) -> None:
    """Run the node daemon (Docker volume plugin and pfs API)."""
    from pfs_volume.daemon import Daemon

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    settings = Settings(
        state_dir=state_dir.absolute(),
        pool_size=parse_size(pool_size),
        driver_name=driver_name,
        api_socket=api_socket.absolute(),
        plugin_dir=plugin_dir.absolute(),
        node_id=node_id,
        etcd=parse_endpoints(etcd),
        advertise=advertise,
        cluster_token=cluster_token,
        replicas=replicas,
        lease_ttl=lease_ttl,
        docker_host=docker_host,
        reconcile_interval=reconcile_interval,
        reconcile_grace=reconcile_grace,
        max_jobs=max_jobs,
    )
    daemon = Daemon(settings)
    daemon.start()
    click.echo(
        f"pfs serving driver {settings.driver_name!r} on {settings.plugin_socket}, "
        f"API on {settings.api_socket}, state in {settings.state_dir}",
        err=True,
    )
    daemon.wait()


@main.group()
def repo() -> None:
    """Repos: list, inspect, delete."""


@repo.command("create")
@click.argument("name")
@click.option("--description", "-d", default="", help="What the repo holds.")
@click.option(
    "--replicas",
    type=int,
    help="Copies of each commit in a cluster (default: the node's --replicas).",
)
@json_option
@reports_errors
def repo_create(name: str, description: str, replicas: int | None, as_json: bool) -> None:
    """Create an empty repo (mounting a volume of a new repo does this too)."""
    body: dict[str, Any] = {"name": name, "description": description}
    if replicas is not None:
        body["replicas"] = replicas
    result = _client().request("POST", "/v1/repos", json=body)
    placed = f" on {', '.join(result['placement'])}" if result["placement"] else ""
    _show(result, as_json, f"created repo {result['name']}{placed}")


@repo.command("export")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    "dest",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write.",
)
@reports_errors
def repo_export(name: str, dest: Path) -> None:
    """Write a repo with all its history (every commit) to one file."""
    response = _client().stream("GET", f"/v1/repos/{_segment(name)}/export")
    written = 0
    show = sys.stderr.isatty()
    with open(dest, "wb") as out:
        for chunk in response.iter_content(CHUNK):
            out.write(chunk)
            written += len(chunk)
            if show:
                click.echo(f"\rexported {written / 1024**2:,.1f} MiB", nl=False, err=True)
    click.echo(
        f"{chr(13) if show else ''}exported repo {name} to {dest} ({written / 1024**2:,.1f} MiB)",
        err=True,
    )


@repo.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "name", help="Import under this name (default: the exported one).")
@json_option
@reports_errors
def repo_import(source: Path, name: str | None, as_json: bool) -> None:
    """Restore a repo from an export file, with identical commit ids and history."""
    size = source.stat().st_size
    with (
        open(source, "rb") as raw,
        click.progressbar(length=size, label="importing", file=sys.stderr) as bar,
    ):
        reader = _Progress(raw, bar.update)
        query: dict[str, Any] = {"as": name}
        response = _client().stream("POST", "/v1/imports", data=reader, **query)
    result = response.json()
    _show(result, as_json, f"imported repo {result['name']}")


class _Progress(io.RawIOBase):
    """A file that reports how much has been read of it."""

    def __init__(self, raw: IO[bytes], advance: Callable[[int], None]) -> None:
        self.raw = raw
        self.advance = advance

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.advance(len(data))
        return data


@repo.command("list")
@json_option
@reports_errors
def repo_list(as_json: bool) -> None:
    """List repos."""
    repos = _client().get("/v1/repos")["repos"]
    if as_json:
        _print_json(repos)
        return
    click.echo(
        table(
            ["repo", "created", "description"],
            [[r["name"], when(r["created"]), r["description"]] for r in repos],
        )
    )


@repo.command("inspect")
@click.argument("name")
@json_option
@reports_errors
def repo_inspect(name: str, as_json: bool) -> None:
    """Show a repo: branches with their heads, commit count, active mounts."""
    info = _client().get(f"/v1/repos/{_segment(name)}")
    if as_json:
        _print_json(info)
        return
    click.echo(f"Repo:     {info['name']}")
    click.echo(f"Created:  {when(info['created'])}")
    click.echo(f"Commits:  {info['commit_count']}")
    click.echo(f"Size:     {info['size'] / 1024**2:,.1f} MiB on disk")
    click.echo(f"Mounts:   {len(info['mounts'])}")
    click.echo("")
    click.echo(
        table(["branch", "head"], [[b["name"], short_id(b["head"])] for b in info["branches"]])
    )


@repo.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Delete the pipelines that read or write it too (jobs stop)."
)
@json_option
@reports_errors
def repo_delete(name: str, yes: bool, force: bool, as_json: bool) -> None:
    """Delete a repo and ALL its data (refused while a volume of it is mounted, or
    while pipelines read or write it unless --force)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("deleting a repo needs --yes when not run on a terminal")
        also = " and every pipeline that uses it" if force else ""
        click.confirm(f"Delete repo {name} with all its commits and data{also}?", abort=True)
    result = _client().delete(f"/v1/repos/{_segment(name)}", force="true" if force else None)
    _show(result, as_json, f"deleted repo {result['deleted']}" + _gone(result))


def _gone(result: dict[str, Any]) -> str:
    """The pipelines a forced delete took with it, as a line of its own."""
    names = result.get("pipelines_deleted") or []
    return f"\ndeleted pipeline(s) {', '.join(names)} with it" if names else ""


@main.group()
def branch() -> None:
    """Branches: create, list, delete."""


@branch.command("create")
@click.argument("target", metavar="REPO/NEW")
@click.option("--from", "start", metavar="REF", help="Start at this ref (default: master).")
@json_option
@reports_errors
def branch_create(target: str, start: str | None, as_json: bool) -> None:
    """Create a branch at a ref (a branch, a commit id or prefix, REF~N)."""
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise click.UsageError(f"{target!r} names no branch; give REPO/NEW")
    body: dict[str, str] = {"name": name}
    if start is not None:
        body["from"] = str(parse_ref(start))
    result = _client().request("POST", f"/v1/repos/{_segment(repo_name)}/branches", json=body)
    _show(result, as_json, f"created branch {repo_name}/{name} at {short_id(result['head'])}")


@branch.command("delete")
@click.argument("target", metavar="REPO/BRANCH")
@click.option(
    "--force", is_flag=True, help="Delete the pipelines that read or write it too (jobs stop)."
)
@json_option
@reports_errors
def branch_delete(target: str, force: bool, as_json: bool) -> None:
    """Delete a branch (refused while mounted, or while pipelines read or write it
    unless --force); its commits stay reachable by id."""
    repo_name, name = _repo_and_branch(target)
    result = _client().delete(
        f"/v1/repos/{_segment(repo_name)}/branches/{_segment(name)}",
        force="true" if force else None,
    )
    _show(result, as_json, f"deleted branch {result['deleted']}" + _gone(result))


@main.command("reset")
@click.argument("target", metavar="REPO/BRANCH")
@click.argument("ref", metavar="REF")
@json_option
@reports_errors
def reset(target: str, ref: str, as_json: bool) -> None:
    """Move a branch's head to REF (refused while mounted); the old head stays
    reachable by its id."""
    repo_name, name = _repo_and_branch(target)
    result = _client().request(
        "POST",
        f"/v1/repos/{_segment(repo_name)}/branches/{_segment(name)}/reset",
        json={"ref": str(parse_ref(ref))},
    )
    _show(
        result,
        as_json,
        f"{repo_name}/{name}: {short_id(result['old_head'])} -> {short_id(result['head'])}",
    )


@branch.command("list")
@click.argument("repo_name", metavar="REPO")
@json_option
@reports_errors
def branch_list(repo_name: str, as_json: bool) -> None:
    """List a repo's branches with their heads."""
    branches = _client().get(f"/v1/repos/{_segment(repo_name)}/branches")["branches"]
    if as_json:
        _print_json(branches)
        return
    click.echo(
        table(
            ["branch", "head", "created"],
            [[b["name"], short_id(b["head"]), when(b["created"])] for b in branches],
        )
    )


@main.command("log")
@click.argument("target", metavar="REPO[/BRANCH]|REPO@REF")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many commits.")
@click.option(
    "--first-parent", is_flag=True, help="Follow only first parents (the branch's own line)."
)
@json_option
@reports_errors
def log_(target: str, limit: int | None, first_parent: bool, as_json: bool) -> None:
    """Show commits, newest first, from a branch head (master by default) or a ref, with
    what merges brought (REF~N follows first parents, REF^2 a merge's second)."""
    if "@" in target:
        repo_name, ref = parse_repo_ref(target)
    else:
        repo_name, branch_name = parse_repo_branch(target)
        ref = parse_ref(branch_name or DEFAULT_BRANCH)
    query: dict[str, Any] = {"ref": str(ref), "limit": limit}
    if first_parent:
        query["first_parent"] = "true"
    commits = _client().get(f"/v1/repos/{_segment(repo_name)}/log", **query)["commits"]
    if as_json:
        _print_json(commits)
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


@main.group(cls=_CommitGroup)
def commit() -> None:
    """Commits: pfs commit REPO/BRANCH -m MSG, or pfs commit inspect REPO@REF."""


@commit.command("create", hidden=True)
@click.argument("target", metavar="REPO/BRANCH")
@click.option("--message", "-m", default="", help="The commit message.")
@json_option
@reports_errors
def commit_create(target: str, message: str, as_json: bool) -> None:
    """Commit what changed in a branch's working copy, also while containers use it."""
    repo_name, name = parse_repo_branch(target)
    path = f"/v1/repos/{_segment(repo_name)}/branches/{_segment(name or DEFAULT_BRANCH)}/commit"
    result = _client().request("POST", path, json={"message": message})
    if as_json:
        _print_json(result["commit"])
    elif result["commit"] is None:
        click.echo("nothing changed: no commit made")
    else:
        click.echo(f"committed {result['commit']['id']}")


@commit.command("inspect")
@click.argument("target", metavar="REPO@REF")
@json_option
@reports_errors
def commit_inspect(target: str, as_json: bool) -> None:
    """Show one commit (REF: a branch, a commit id or prefix, optionally ~N)."""
    repo_name, ref = parse_repo_ref(target)
    info = _client().get(f"/v1/repos/{_segment(repo_name)}/commits/{_segment(str(ref))}")
    if as_json:
        _print_json(info)
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


@main.group()
def pipeline() -> None:
    """Pipelines: containers run on every new commit of their inputs."""


def _spec_file(path: Path) -> bytes:
    return path.read_bytes()


SPEC_FILE = click.option(
    "-f",
    "--file",
    "spec_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The spec, JSON or YAML.",
)


@pipeline.command("create")
@SPEC_FILE
@json_option
@reports_errors
def pipeline_create(spec_path: Path, as_json: bool) -> None:
    """Create a pipeline; its first job runs on the current input commits."""
    result = _client().request("POST", "/v1/pipelines", data=_spec_file(spec_path))
    _warn(result)
    _show(result, as_json, f"created pipeline {result['name']}")


def _warn(result: dict[str, Any]) -> None:
    """Print an answer's warnings on stderr (a missing image: pfs never pulls)."""
    for warning in result.get("warnings", ()):
        click.echo(f"pfs: warning: {warning}", err=True)


@pipeline.command("update")
@SPEC_FILE
@click.option("--reprocess", is_flag=True, help="Run every datum again (reuse no earlier output).")
@json_option
@reports_errors
def pipeline_update(spec_path: Path, reprocess: bool, as_json: bool) -> None:
    """Replace a pipeline's spec (named inside the file)."""
    from pfs_volume.pipelines.spec import parse_spec

    name = parse_spec(spec_path.read_bytes(), filename_hint=spec_path.name).name
    result = _client().request(
        "PUT",
        f"/v1/pipelines/{_segment(name)}",
        data=_spec_file(spec_path),
        reprocess="true" if reprocess else None,
    )
    _warn(result)
    _show(
        result,
        as_json,
        f"updated pipeline {result['name']}" + ("; every datum runs again" if reprocess else ""),
    )


@pipeline.command("stop")
@click.argument("name")
@json_option
@reports_errors
def pipeline_stop(name: str, as_json: bool) -> None:
    """Stop a pipeline: its running job is killed (nothing committed), no job starts."""
    result = _client().request("POST", f"/v1/pipelines/{_segment(name)}/stop")
    killed = f"; killed job {', '.join(result['killed'])}" if result["killed"] else ""
    _show(result, as_json, f"stopped pipeline {name}{killed}")


@pipeline.command("start")
@click.argument("name")
@json_option
@reports_errors
def pipeline_start(name: str, as_json: bool) -> None:
    """Start a stopped pipeline: it runs on its current inputs again."""
    result = _client().request("POST", f"/v1/pipelines/{_segment(name)}/start")
    _show(result, as_json, f"started pipeline {name}")


@pipeline.command("list")
@json_option
@reports_errors
def pipeline_list(as_json: bool) -> None:
    """List pipelines: name, inputs, image, output."""
    specs = _client().get("/v1/pipelines")["pipelines"]
    if as_json:
        _print_json(specs)
        return
    rows = []
    for spec in specs:
        inputs = spec["input"]
        items = inputs.get("cross") or inputs.get("union") or [inputs]
        rows.append(
            [
                spec["name"],
                ", ".join(f"{i['repo']}/{i.get('branch', 'master')}" for i in items),
                spec["transform"]["image"],
                f"{spec['output']['repo']}/{spec['output'].get('branch', 'master')}",
            ]
        )
    click.echo(table(["pipeline", "input", "image", "output"], rows))


@pipeline.command("inspect")
@click.argument("name")
@json_option
@reports_errors
def pipeline_inspect(name: str, as_json: bool) -> None:
    """Show a pipeline's spec and its latest jobs."""
    _print_json(_client().get(f"/v1/pipelines/{_segment(name)}"))


@pipeline.command("delete")
@click.argument("name")
@json_option
@reports_errors
def pipeline_delete(name: str, as_json: bool) -> None:
    """Delete a pipeline, stopping its jobs, and the datum outputs and job logs it
    kept; its jobs' records and output commits stay."""
    result = _client().delete(f"/v1/pipelines/{_segment(name)}")
    killed = f"; killed job {', '.join(result['killed'])}" if result.get("killed") else ""
    _show(result, as_json, f"deleted pipeline {name}{killed}")


@main.group()
def job() -> None:
    """Jobs: list, inspect, logs, rerun."""


@job.command("list")
@click.option("--pipeline", "name", help="Only this pipeline's jobs.")
@json_option
@reports_errors
def job_list(name: str | None, as_json: bool) -> None:
    """List jobs, oldest first: id, pipeline, state, datums run and reused, output."""
    jobs = _client().get("/v1/jobs", pipeline=name)["jobs"]
    if as_json:
        _print_json(jobs)
        return
    rows = [
        [
            j["id"],
            j["pipeline"],
            j["state"],
            sum(1 for d in j["datums"] if d["state"] != "reused"),
            sum(1 for d in j["datums"] if d["state"] == "reused"),
            j["output"] or "",
        ]
        for j in jobs
    ]
    click.echo(table(["job", "pipeline", "state", "ran", "reused", "output"], rows))


@job.command("inspect")
@click.argument("job_id")
@json_option
@reports_errors
def job_inspect(job_id: str, as_json: bool) -> None:
    """Show a job: inputs, state, timings, datums, output, error."""
    _print_json(_client().get(f"/v1/jobs/{_segment(job_id)}"))


@job.command("logs")
@click.argument("job_id")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Print output as the datums write it, each line after its datum's short id, "
    "until the job ends (a follow lasts at most 1 h; run it again to go on).",
)
@reports_errors
def job_logs(job_id: str, follow: bool) -> None:
    """Print the container output of each of a job's datums (running ones too)."""
    if follow:
        response = _client().stream(
            "GET", f"/v1/jobs/{_segment(job_id)}/logs", timeout=FOLLOW_READ, follow="true"
        )
        with response:
            for line in response.iter_lines(decode_unicode=False):
                click.echo(line.decode(errors="replace"))
        return
    for datum, text in _client().get(f"/v1/jobs/{_segment(job_id)}/logs")["logs"].items():
        click.echo(f"=== datum {datum}")
        click.echo(text, nl=not text.endswith("\n"))


FOLLOW_READ = 3700.0
"""Seconds ``job logs --follow`` waits for a line: a follow ends within the daemon's
one hour, and a datum may print nothing for that long."""


@main.group()
def datum() -> None:
    """Datums of a job: list, inspect."""


@datum.command("list")
@click.argument("job_id")
@json_option
@reports_errors
def datum_list(job_id: str, as_json: bool) -> None:
    """List a job's datums: id, state, tries, seconds, exit code, paths (of a running
    job, those that ended so far)."""
    result = _client().get(f"/v1/jobs/{_segment(job_id)}/datums")
    if as_json:
        _print_json(result["datums"])
        return
    rows = [
        [
            short_id(d["id"]),
            d["state"],
            d.get("tries", 0) or "",
            f"{d['seconds']:.1f}",
            "" if d["exit_code"] is None else d["exit_code"],
            " ".join(f"{name}:/{printable(path)}" for name, path in sorted(d["paths"].items())),
        ]
        for d in result["datums"]
    ]
    click.echo(table(["datum", "state", "tries", "seconds", "exit", "paths"], rows))
    if result["state"] not in ("success", "failure", "killed"):
        click.echo(f"(job {result['state']}: datums are listed as they end)", err=True)


@datum.command("inspect")
@click.argument("job_id")
@click.argument("datum_id", metavar="DATUM")
@json_option
@reports_errors
def datum_inspect(job_id: str, datum_id: str, as_json: bool) -> None:
    """Show one datum of a job (its id or a unique prefix of 4+ hex digits)."""
    found = _client().get(f"/v1/jobs/{_segment(job_id)}/datums/{_segment(datum_id)}")
    if as_json:
        _print_json(found)
        return
    for key in ("id", "state", "tries", "started", "seconds", "exit_code", "error", "job"):
        value = found.get(key)
        click.echo(f"{key + ':':11} {'-' if value is None or value == '' else value}")
    for name, path in sorted(found["paths"].items()):
        click.echo(f"{'path:':11} {name}:/{printable(path)}")


@job.command("rerun")
@click.argument("job_id")
@json_option
@reports_errors
def job_rerun(job_id: str, as_json: bool) -> None:
    """Run a job again on the same input commits."""
    result = _client().request("POST", f"/v1/jobs/{_segment(job_id)}/rerun")
    _show(result, as_json, f"queued job {result['id']}")


WAIT_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Give up after this long (exit 2). Default: wait as long as it takes.",
)
WAIT_SLICE = 30.0
"""Seconds one wait request may block on the daemon (its limit)."""
WAIT_PAUSE = 1.0
"""Seconds between the starts of two wait requests when the daemon answers at once."""


def _wait_until(
    ask: Callable[[float], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float | None,
    what: str,
) -> dict[str, Any]:
    """Ask the daemon until ``done``, each request blocking up to WAIT_SLICE seconds."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAIT_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
        asked = time.monotonic()
        result = ask(min(WAIT_SLICE, left))
        if done(result):
            return result
        if deadline is not None and time.monotonic() >= deadline:
            click.echo(f"pfs: {what} is not done after {timeout:g} s", err=True)
            sys.exit(2)
        # Answered at once, not done: the daemon serves its most waits already. Ask
        # again after a pause, never in a tight loop on its socket.
        pause = WAIT_PAUSE - (time.monotonic() - asked)
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
        if pause > 0:
            time.sleep(pause)


@job.command("wait")
@click.argument("job_id")
@WAIT_TIMEOUT
@json_option
@reports_errors
def job_wait(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait until a job ends; exit 0 if it succeeded, 1 if it failed or was killed."""
    client = _client()
    result = _wait_until(
        lambda slice_: client.get(f"/v1/jobs/{_segment(job_id)}/wait", timeout=f"{slice_:g}"),
        lambda job: job["state"] in ("success", "failure", "killed"),
        timeout,
        f"job {job_id}",
    )
    if as_json:
        _print_json(result)
    else:
        detail = f": {result['error']}" if result.get("error") else ""
        output = f" (output {result['output']})" if result.get("output") else ""
        click.echo(f"job {result['id']} {result['state']}{output}{detail}")
    if result["state"] != "success":
        sys.exit(1)


@main.command("wait")
@click.argument("target", metavar="REPO@REF")
@WAIT_TIMEOUT
@json_option
@reports_errors
def wait(target: str, timeout: float | None, as_json: bool) -> None:
    """Wait until every pipeline downstream of a commit is done with it.

    Exit 0 when all succeeded (or nothing is downstream), 1 when a job failed or was
    killed, or a pipeline is stopped, blocked behind one that failed, or skipped the
    commit (its branch was reset past it).
    """
    repo_name, ref = parse_repo_ref(target)
    client = _client()
    route = f"/v1/repos/{_segment(repo_name)}/commits/{_segment(str(ref))}/wait"
    result = _wait_until(
        lambda slice_: client.get(route, timeout=f"{slice_:g}"),
        lambda progress: bool(progress["done"]),
        timeout,
        f"{target}",
    )
    if as_json:
        _print_json(result)
    else:
        rows = [
            [p["pipeline"], p["state"], p["job"] or "", p["output"] or "", p["detail"] or ""]
            for p in result["pipelines"]
        ]
        click.echo(f"commit {result['commit']}")
        if rows:
            click.echo(table(["pipeline", "state", "job", "output", "detail"], rows))
        else:
            click.echo("(no pipeline reads it)")
    if not result["succeeded"]:
        sys.exit(1)


@main.command("provenance")
@click.argument("target", metavar="REPO@REF")
@json_option
@reports_errors
def provenance(target: str, as_json: bool) -> None:
    """What produced a commit (upstream) and which commits it fed (downstream)."""
    repo_name, ref = parse_repo_ref(target)
    result = _client().get(
        f"/v1/repos/{_segment(repo_name)}/commits/{_segment(str(ref))}/provenance"
    )
    if as_json:
        _print_json(result)
        return
    click.echo(f"commit {result['commit']}")
    click.echo("made from:")
    for item in result["upstream"] or ["(nothing: not a pipeline's output)"]:
        click.echo(f"  {item}")
    click.echo("fed into:")
    for item in result["downstream"] or ["(nothing yet)"]:
        click.echo(f"  {item}")


@main.group()
def node() -> None:
    """Nodes of the cluster: list."""


@node.command("list")
@json_option
@reports_errors
def node_list(as_json: bool) -> None:
    """List the live nodes: id, API address, state, free and total pool space."""
    nodes = _client().get("/v1/nodes")["nodes"]
    if as_json:
        _print_json(nodes)
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


@main.group()
def mount() -> None:
    """Docker mounts of pfs volumes: list, release."""


@mount.command("list")
@click.option(
    "--stale",
    is_flag=True,
    help="Only mounts no container of the Docker engine holds (pfs mount release fixes them).",
)
@json_option
@reports_errors
def mount_list(stale: bool, as_json: bool) -> None:
    """List the mounts Docker holds (one per container using a volume)."""
    mounts = _client().get("/v1/mounts", stale="true" if stale else "false")["mounts"]
    if as_json:
        _print_json(mounts)
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
@reports_errors
def mount_release(mount_id: str, as_json: bool) -> None:
    """Release a mount whose container is gone but Docker never unmounted (after a
    crash): as Docker's Unmount would, the last mount of a branch commits."""
    result = _client().delete(f"/v1/mounts/{_segment(mount_id)}")
    _show(result, as_json, f"released mount {result['released']}")


@main.command("doctor")
@json_option
@reports_errors
def doctor(as_json: bool) -> None:
    """Show stuck or suspicious state (mounts no container holds, uncommitted working
    copies, a full pool, a changed driver name), each with the command that fixes it.
    Changes nothing. Exits 1 when something needs doing."""
    findings = _client().get("/v1/doctor")["findings"]
    if as_json:
        _print_json(findings)
    elif not findings:
        click.echo("nothing stuck or suspicious")
    for finding in [] if as_json else findings:
        click.echo(f"{finding['severity'].upper():8}{finding['what']}")
        if finding["fix"]:
            click.echo(f"{'':8}fix: {finding['fix']}")
    if any(f["severity"] in ("error", "warning") for f in findings):
        sys.exit(1)


@main.command("diff")
@click.argument("first", metavar="REPO@A")
@click.argument("second", metavar="[REPO@B]", required=False)
@json_option
@reports_errors
def diff(first: str, second: str | None, as_json: bool) -> None:
    """What changed from A to B, or in A (against its parent) when B is not given."""
    repo_name, ref_a = parse_repo_ref(first)
    params: dict[str, str] = {"to": str(ref_a)}
    if second is not None:
        other_repo, ref_b = parse_repo_ref(second)
        if other_repo != repo_name:
            raise click.UsageError("both refs must name the same repo")
        params = {"from": str(ref_a), "to": str(ref_b)}
    result = _client().get(f"/v1/repos/{_segment(repo_name)}/diff", **params)
    if as_json:
        _print_json(result)
        return
    marks = {"added": "A", "modified": "M", "deleted": "D", "renamed": "R"}
    for change in result["changes"]:
        where = _shown(change, "path")
        if change["kind"] == "renamed":
            where = f"{_shown(change, 'old_path')} -> {where}"
            if change["modified"]:
                where += " (modified)"
        click.echo(f"{marks[change['kind']]}  {where}")


@main.command("revert")
@click.argument("target", metavar="REPO/BRANCH")
@click.argument("commit_ref", metavar="COMMIT")
@json_option
@reports_errors
def revert(target: str, commit_ref: str, as_json: bool) -> None:
    """Make a new commit on a branch that undoes COMMIT's changes."""
    repo_name, name = _repo_and_branch(target)
    result = _client().request(
        "POST", _branch_url(repo_name, name, "revert"), json={"commit": str(parse_ref(commit_ref))}
    )
    _print_commit(result["commit"], as_json)


@main.command("merge")
@click.argument("source", metavar="REPO/SRC")
@click.option("--into", "target", required=True, metavar="DST", help="The branch to merge into.")
@click.option(
    "--strategy",
    type=click.Choice(["ours", "theirs"]),
    help="Settle every conflict: keep DST's version (ours) or SRC's (theirs).",
)
@json_option
@reports_errors
def merge(source: str, target: str, strategy: str | None, as_json: bool) -> None:
    """Merge branch SRC into DST: fast-forward when possible, else file by file."""
    repo_name, name = _repo_and_branch(source)
    body = {"from": name, **({"strategy": strategy} if strategy else {})}
    result = _client().request("POST", _branch_url(repo_name, target, "merge"), json=body)
    _show(
        result,
        as_json,
        f"{result['outcome']}: {repo_name}/{target} is at {short_id(result['head'])}",
    )


@main.command("gc")
@click.argument("repo_name", metavar="REPO")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N newest commits.")
@click.option(
    "--older-than", metavar="DURATION", help="Prune only commits older than this (e.g. 30d, 12h)."
)
@json_option
@reports_errors
def gc(repo_name: str, keep_last: int | None, older_than: str | None, as_json: bool) -> None:
    """Delete the data of old commits that no branch head is; they stay in the log,
    marked pruned. Also deletes every pipeline's kept datum outputs that no job can
    reuse."""
    body: dict[str, Any] = {}
    if keep_last is not None:
        body["keep_last"] = keep_last
    if older_than is not None:
        body["older_than"] = older_than
    result = _client().request("POST", f"/v1/repos/{_segment(repo_name)}/gc", json=body)
    _show(
        result,
        as_json,
        f"pruned {len(result['pruned'])} commit(s), about "
        f"{result['bytes_freed'] / 1024**2:.1f} MiB freed; "
        f"{result.get('datum_outputs_freed', 0)} unused datum output(s) of pipelines deleted",
    )


@main.command("ls")
@click.argument("target", metavar="REPO@REF")
@click.argument("path", default="")
@json_option
@reports_errors
def ls(target: str, path: str, as_json: bool) -> None:
    """List a folder of a commit (a symlink is listed with its target, not followed)."""
    repo_name, ref = parse_repo_ref(target)
    entries = _client().get(_commit_url(repo_name, str(ref), "files"), path=os.fsencode(path))[
        "entries"
    ]
    if as_json:
        _print_json(entries)
        return
    rows = []
    for e in entries:
        name = _shown(e, "name")
        if e["kind"] == "symlink":
            name = f"{name} -> {_shown(e, 'target')}"
        rows.append([name, e["kind"], e["size"], e["mode"]])
    click.echo(table(["name", "type", "size", "mode"], rows))


@main.command("cat")
@click.argument("target", metavar="REPO@REF")
@click.argument("path")
@reports_errors
def cat(target: str, path: str) -> None:
    """Write a regular file of a commit to standard output (streamed, any size)."""
    repo_name, ref = parse_repo_ref(target)
    response = _client().stream(
        "GET", _commit_url(repo_name, str(ref), "content"), path=os.fsencode(path)
    )
    out = sys.stdout.buffer
    for chunk in response.iter_content(CHUNK):
        out.write(chunk)
    out.flush()


@main.command("get")
@click.argument("target", metavar="REPO@REF")
@click.argument("path", default="")
@click.option(
    "-o",
    "--output",
    "dest",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (made if missing).",
)
@reports_errors
def get(target: str, path: str, dest: Path) -> None:
    """Copy a folder (or file) of a commit into a local folder; symlinks stay symlinks
    (even ones pointing outside), and nothing is written outside the folder."""
    repo_name, ref = parse_repo_ref(target)
    response = _client().stream(
        "GET", _commit_url(repo_name, str(ref), "tar"), path=os.fsencode(path)
    )
    names = [p for p in path.split("/") if p not in ("", ".")]
    top = dest / (names[-1] if names else repo_name)
    response.raw.decode_content = True
    try:
        report = unpack(cast(IO[bytes], response.raw), dest)
    except (tarfile.TarError, OSError) as exc:
        raise PfsError(
            f"the copy into {printable(str(dest))} stopped part-way ({exc}); what was "
            "written so far stays there"
        ) from exc
    for line in report.skipped:
        click.echo(f"pfs: skipped {line}", err=True)
    for line in report.refused:
        click.echo(f"pfs: refused {line}", err=True)
    click.echo(
        f"wrote {report.files} file(s), {report.symlinks} symlink(s) and {report.folders} "
        f"folder(s) to {printable(str(top))}",
        err=True,
    )
    if report.refused:
        raise PfsError(
            f"{len(report.refused)} entr(y/ies) refused: they would have written outside "
            f"{printable(str(dest))} or through a link"
        )


@main.command("put")
@click.argument("target", metavar="REPO/BRANCH")
@click.argument("path")
@click.option("--message", "-m", default="", help="The commit message.")
@json_option
@reports_errors
def put(target: str, path: str, message: str, as_json: bool) -> None:
    """Write standard input to PATH on a branch and commit it (no container needed)."""
    repo_name, name = parse_repo_branch(target)
    branch_name = name or DEFAULT_BRANCH
    response = _client().stream(
        "PUT",
        _branch_url(repo_name, branch_name, "files"),
        data=sys.stdin.buffer,
        path=os.fsencode(path),
        message=message or None,
    )
    result = response.json()
    commit, changed = result["commit"], result["changed"]
    if changed:
        _show({**commit, "changed": True}, as_json, f"committed {commit['id']}")
    else:
        _show(
            {**commit, "changed": False},
            as_json,
            f"unchanged: {repo_name}/{branch_name} holds exactly that already; no commit "
            f"(head {commit['id']})",
        )


@main.command("rm")
@click.argument("target", metavar="REPO/BRANCH")
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a folder and what it holds.")
@click.option("--message", "-m", default="", help="The commit message.")
@json_option
@reports_errors
def rm(target: str, path: str, recursive: bool, message: str, as_json: bool) -> None:
    """Remove PATH from a branch and commit it (no container needed)."""
    repo_name, name = parse_repo_branch(target)
    result = _client().delete(
        _branch_url(repo_name, name or DEFAULT_BRANCH, "files"),
        path=os.fsencode(path),
        recursive="true" if recursive else "false",
        message=message or None,
    )
    _print_commit(result["commit"], as_json)


def _print_commit(commit: dict[str, Any], as_json: bool) -> None:
    _show(commit, as_json, f"committed {commit['id']}")


def _commit_url(repo_name: str, ref: str, what: str) -> str:
    return f"/v1/repos/{_segment(repo_name)}/commits/{_segment(ref)}/{what}"


def _branch_url(repo_name: str, branch_name: str, what: str) -> str:
    return f"/v1/repos/{_segment(repo_name)}/branches/{_segment(branch_name)}/{what}"


def _repo_and_branch(target: str) -> tuple[str, str]:
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise click.UsageError(f"{target!r} names no branch; give REPO/BRANCH")
    return repo_name, name


def _shown(item: dict[str, Any], field: str) -> str:
    """A file name of an API answer, for people: control characters and bytes that
    are not UTF-8 escaped (never printed raw)."""
    return printable(from_wire(item[field], item.get(f"{field}_encoding") or "utf-8"))


def _segment(text: str) -> str:
    """Quote a path segment so that nothing in it can change the route."""
    return quote(text, safe="")
