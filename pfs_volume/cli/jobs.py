"""``pfs job ...`` and ``pfs datum ...``: the runs of pipelines."""

from __future__ import annotations

import sys

from pfs_volume.cli.commands import Group, arg
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import note, print_json, show
from pfs_volume.cli.tables import short_id, table
from pfs_volume.cli.waiting import WAIT_TIMEOUT, wait_until
from pfs_volume.filenames import printable

FOLLOW_READ = 3700.0
"""Seconds ``job logs --follow`` waits for a line: a follow ends within the daemon's
one hour, and a datum may print nothing for that long."""


job = Group("job", "Jobs: list, inspect, logs, rerun.")


@job.command("list")
@arg("--pipeline", dest="name", help="Only this pipeline's jobs.")
@JSON
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
    print(table(["job", "pipeline", "state", "ran", "reused", "output"], rows))


@job.command("inspect")
@arg("job_id")
@JSON
def job_inspect(job_id: str, as_json: bool) -> None:
    """Show a job: inputs, state, timings, datums, output, error."""
    print_json(api_client().inspect_job(job_id))


@job.command("logs")
@arg("job_id")
@arg(
    "--follow",
    "-f",
    action="store_true",
    help="Print output as the datums write it, each line after its datum's short id, "
    "until the job ends (a follow lasts at most 1 h; run it again to go on).",
)
def job_logs(job_id: str, follow: bool) -> None:
    """Print the container output of each of a job's datums (running ones too)."""
    if follow:
        with api_client().follow_job_logs(job_id, FOLLOW_READ) as response:
            for line in response.iter_lines():
                print(line.decode(errors="replace"), flush=True)
        return
    for datum_id, text in api_client().job_logs(job_id).items():
        print(f"=== datum {datum_id}")
        print(text, end="" if text.endswith("\n") else "\n")


@job.command("rerun")
@arg("job_id")
@JSON
def job_rerun(job_id: str, as_json: bool) -> None:
    """Run a job again on the same input commits."""
    result = api_client().rerun_job(job_id)
    show(result, as_json, f"queued job {result['id']}")


@job.command("wait")
@arg("job_id")
@WAIT_TIMEOUT
@JSON
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
        print(f"job {result['id']} {result['state']}{output}{detail}")
    if result["state"] != "success":
        sys.exit(1)


datum = Group("datum", "Datums of a job: list, inspect.")


@datum.command("list")
@arg("job_id")
@JSON
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
    print(table(["datum", "state", "tries", "seconds", "exit", "paths"], rows))
    if result["state"] not in ("success", "failure", "killed"):
        note(f"(job {result['state']}: datums are listed as they end)")


@datum.command("inspect")
@arg("job_id")
@arg("datum_id", metavar="DATUM")
@JSON
def datum_inspect(job_id: str, datum_id: str, as_json: bool) -> None:
    """Show one datum of a job (its id or a unique prefix of 4+ hex digits)."""
    found = api_client().inspect_datum(job_id, datum_id)
    if as_json:
        print_json(found)
        return
    for key in ("id", "state", "tries", "started", "seconds", "exit_code", "error", "job"):
        value = found.get(key)
        print(f"{key + ':':11} {'-' if value is None or value == '' else value}")
    for name, path in sorted(found["paths"].items()):
        print(f"{'path:':11} {name}:/{printable(path)}")
