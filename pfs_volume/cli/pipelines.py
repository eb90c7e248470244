"""``pfs pipeline ...`` and ``pfs wait`` (for the pipelines downstream of a commit)."""

from __future__ import annotations

import sys

from pfs_volume.cli.argtypes import existing_file
from pfs_volume.cli.commands import Group, arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import print_json, show, warn
from pfs_volume.cli.tables import table
from pfs_volume.cli.waiting import WAIT_TIMEOUT, wait_until
from pfs_volume.names import parse_repo_ref

TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from pathlib import Path

SPEC_FILE = arg(
    "-f",
    "--file",
    dest="spec_path",
    metavar="SPEC",
    required=True,
    type=existing_file,
    help="The spec, JSON or YAML.",
)


pipeline = Group("pipeline", "Pipelines: containers run on every new commit of their inputs.")


@pipeline.command("create")
@SPEC_FILE
@JSON
def pipeline_create(spec_path: Path, as_json: bool) -> None:
    """Create a pipeline; its first job runs on the current input commits."""
    result = api_client().create_pipeline(spec_path.read_bytes())
    warn(result)
    show(result, as_json, f"created pipeline {result['name']}")


@pipeline.command("update")
@SPEC_FILE
@arg("--reprocess", action="store_true", help="Run every datum again (reuse no earlier output).")
@JSON
def pipeline_update(spec_path: Path, reprocess: bool, as_json: bool) -> None:
    """Replace a pipeline's spec (named inside the file)."""
    from pfs_volume.pipelines.spec import parse_spec

    name = parse_spec(spec_path.read_bytes(), filename_hint=spec_path.name).name
    result = api_client().update_pipeline(name, spec_path.read_bytes(), reprocess)
    warn(result)
    show(
        result,
        as_json,
        f"updated pipeline {result['name']}" + ("; every datum runs again" if reprocess else ""),
    )


@pipeline.command("stop")
@arg("name")
@JSON
def pipeline_stop(name: str, as_json: bool) -> None:
    """Stop a pipeline: its running job is killed (nothing committed), no job starts."""
    result = api_client().stop_pipeline(name)
    killed = f"; killed job {', '.join(result['killed'])}" if result["killed"] else ""
    show(result, as_json, f"stopped pipeline {name}{killed}")


@pipeline.command("start")
@arg("name")
@JSON
def pipeline_start(name: str, as_json: bool) -> None:
    """Start a stopped pipeline: it runs on its current inputs again."""
    result = api_client().start_pipeline(name)
    show(result, as_json, f"started pipeline {name}")


@pipeline.command("list")
@JSON
def pipeline_list(as_json: bool) -> None:
    """List pipelines: name, inputs, image, output."""
    specs = api_client().list_pipelines()
    if as_json:
        print_json(specs)
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
    print(table(["pipeline", "input", "image", "output"], rows))


@pipeline.command("inspect")
@arg("name")
@JSON
def pipeline_inspect(name: str, as_json: bool) -> None:
    """Show a pipeline's spec and its latest jobs."""
    print_json(api_client().inspect_pipeline(name))


@pipeline.command("delete")
@arg("name")
@JSON
def pipeline_delete(name: str, as_json: bool) -> None:
    """Delete a pipeline, stopping its jobs, and the datum outputs and job logs it
    kept; its jobs' records and output commits stay."""
    result = api_client().delete_pipeline(name)
    killed = f"; killed job {', '.join(result['killed'])}" if result.get("killed") else ""
    show(result, as_json, f"deleted pipeline {name}{killed}")


@command("wait")
@arg("target", metavar="REPO@REF")
@WAIT_TIMEOUT
@JSON
def wait(target: str, timeout: float | None, as_json: bool) -> None:
    """Wait until every pipeline downstream of a commit is done with it.

    Exit 0 when all succeeded (or nothing is downstream), 1 when a job failed or was
    killed, or a pipeline is stopped, blocked behind one that failed, or skipped the
    commit (its branch was reset past it).
    """
    repo_name, ref = parse_repo_ref(target)
    client = api_client()
    result = wait_until(
        lambda slice_: client.wait_commit(repo_name, str(ref), slice_),
        lambda progress: bool(progress["done"]),
        timeout,
        f"{target}",
    )
    if as_json:
        print_json(result)
    else:
        rows = [
            [p["pipeline"], p["state"], p["job"] or "", p["output"] or "", p["detail"] or ""]
            for p in result["pipelines"]
        ]
        print(f"commit {result['commit']}")
        if rows:
            print(table(["pipeline", "state", "job", "output", "detail"], rows))
        else:
            print("(no pipeline reads it)")
    if not result["succeeded"]:
        sys.exit(1)
