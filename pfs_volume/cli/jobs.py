"""``pfs job ...`` and ``pfs datum ...``: the runs of pipelines."""

from __future__ import annotations

import sys

import click

from pfs_volume.cli.options import api_client, json_option
from pfs_volume.cli.output import print_json, show
from pfs_volume.cli.tables import short_id, table
from pfs_volume.cli.waiting import WAIT_TIMEOUT, wait_until
from pfs_volume.filenames import printable

FOLLOW_READ = 3700.0
"""Seconds ``job logs --follow`` waits for a line: a follow ends within the daemon's
one hour, and a datum may print nothing for that long."""


@click.group("job")
def job() -> None:
    """Jobs: list, inspect, logs, rerun."""


@job.command("list")
@click.option("--pipeline", "name", help="Only this pipeline's jobs.")
@json_option
def job_list(name: str | None, as_json: bool) -> None:
    """List jobs, oldest first: id, pipeline, state, datums run and reused, output."""
    jobs = api_client().list_jobs(name)
    if as_json:
        print_json(jobs)
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
def job_inspect(job_id: str, as_json: bool) -> None:
    """Show a job: inputs, state, timings, datums, output, error."""
    print_json(api_client().inspect_job(job_id))


@job.command("logs")
@click.argument("job_id")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Print output as the datums write it, each line after its datum's short id, "
    "until the job ends (a follow lasts at most 1 h; run it again to go on).",
)
def job_logs(job_id: str, follow: bool) -> None:
    """Print the container output of each of a job's datums (running ones too)."""
    if follow:
        with api_client().follow_job_logs(job_id, FOLLOW_READ) as response:
            for line in response.iter_lines():
                click.echo(line.decode(errors="replace"))
        return
    for datum_id, text in api_client().job_logs(job_id).items():
        click.echo(f"=== datum {datum_id}")
        click.echo(text, nl=not text.endswith("\n"))


@job.command("rerun")
@click.argument("job_id")
@json_option
def job_rerun(job_id: str, as_json: bool) -> None:
    """Run a job again on the same input commits."""
    result = api_client().rerun_job(job_id)
    show(result, as_json, f"queued job {result['id']}")


@job.command("wait")
@click.argument("job_id")
@WAIT_TIMEOUT
@json_option
def job_wait(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait until a job ends; exit 0 if it succeeded, 1 if it failed or was killed."""
    client = api_client()
    result = wait_until(
        lambda slice_: client.wait_job(job_id, slice_),
        lambda found: found["state"] in ("success", "failure", "killed"),
        timeout,
        f"job {job_id}",
    )
    if as_json:
        print_json(result)
    else:
        detail = f": {result['error']}" if result.get("error") else ""
        output = f" (output {result['output']})" if result.get("output") else ""
        click.echo(f"job {result['id']} {result['state']}{output}{detail}")
    if result["state"] != "success":
        sys.exit(1)


@click.group("datum")
def datum() -> None:
    """Datums of a job: list, inspect."""


@datum.command("list")
@click.argument("job_id")
@json_option
def datum_list(job_id: str, as_json: bool) -> None:
    """List a job's datums: id, state, tries, seconds, exit code, paths (of a running
    job, those that ended so far)."""
    result = api_client().list_datums(job_id)
    if as_json:
        print_json(result["datums"])
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
def datum_inspect(job_id: str, datum_id: str, as_json: bool) -> None:
    """Show one datum of a job (its id or a unique prefix of 4+ hex digits)."""
    found = api_client().inspect_datum(job_id, datum_id)
    if as_json:
        print_json(found)
        return
    for key in ("id", "state", "tries", "started", "seconds", "exit_code", "error", "job"):
        value = found.get(key)
        click.echo(f"{key + ':':11} {'-' if value is None or value == '' else value}")
    for name, path in sorted(found["paths"].items()):
        click.echo(f"{'path:':11} {name}:/{printable(path)}")
