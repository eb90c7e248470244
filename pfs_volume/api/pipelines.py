"""Routes of the pipelines API: specs, jobs, logs and provenance (``/v1/pipelines``,
``/v1/jobs``, ``/v1/repos/<repo>/commits/<ref>/provenance``)."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

from pfs_volume.api.queries import flag
from pfs_volume.errors import InvalidRequest
from pfs_volume.names import check_component, parse_ref
from pfs_volume.pipelines import joblogs
from pfs_volume.pipelines.jobs import DatumResult, JobRecord, find_datum
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.pipelines.spec import MAX_SPEC_BYTES, load_spec, spec_to_json
from pfs_volume.pipelines.waits import MAX_WAIT
from pfs_volume.request_limits import accepts_body
from pfs_volume.strict_json import read_body


def job_json(job: JobRecord) -> dict[str, Any]:
    """A job: id, pipeline, inputs, state, times, output, error and its datums."""
    body = asdict(job)
    body.pop("version")
    body["datums"] = [asdict(d) for d in job.datums]
    return body


def wait_timeout() -> float:
    """The ``timeout`` query parameter of a wait: seconds, 0 to MAX_WAIT (default)."""
    value = request.args.get("timeout", str(MAX_WAIT))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:
        raise InvalidRequest(
            f"timeout must be a number of seconds from 0 to {MAX_WAIT:g}, not {value[:40]!r}"
        )
    return seconds


def datums_of(pipelines: PipelineService, job: JobRecord) -> JobRecord:
    """The job, with the datums that ended so far when its record holds none (it is
    still running, or it was killed or timed out before recording them)."""
    if job.datums:
        return job
    folder = pipelines.runner.logs_dir(job.pipeline, job.id)
    return replace(job, datums=tuple(joblogs.results_so_far(folder)))


def datum_json(result: DatumResult) -> dict[str, Any]:
    """A datum's result: id, paths, state, tries, seconds, exit code, error, started."""
    return asdict(result)


def add_pipeline_routes(app: Flask, pipelines: PipelineService) -> None:
    """Register the pipelines API on ``app``."""

    def spec_body() -> Any:
        return load_spec(
            read_body(request.stream, request.content_length, "the pipeline spec", MAX_SPEC_BYTES)
        )

    @app.post("/v1/pipelines")
    @accepts_body(up_to=MAX_SPEC_BYTES)
    def create_pipeline() -> ResponseReturnValue:
        spec = pipelines.create(spec_body())
        return {**spec_to_json(spec), "warnings": pipelines.runner.image_warnings(spec)}, 201

    @app.get("/v1/pipelines")
    def list_pipelines() -> ResponseReturnValue:
        return {"pipelines": [spec_to_json(s) for s in pipelines.list_specs()]}

    @app.get("/v1/pipelines/<name>")
    def inspect_pipeline(name: str) -> ResponseReturnValue:
        check_component(name, "pipeline")
        document = pipelines.document(name)
        # a deleted pipeline's jobs (made before this one, at its epoch) are not its
        jobs = [j for j in pipelines.jobs.list(name) if j.id > document.epoch]
        return {
            **spec_to_json(document.spec),
            "stopped": document.stopped,
            "waiting": pipelines.waiting(name),
            "jobs": [job_json(j) for j in jobs[-10:]],
        }

    @app.put("/v1/pipelines/<name>")
    @accepts_body(up_to=MAX_SPEC_BYTES)
    def update_pipeline(name: str) -> ResponseReturnValue:
        check_component(name, "pipeline")
        reprocess = flag("reprocess")
        spec = pipelines.update(spec_body(), reprocess=reprocess, name=name)
        return {**spec_to_json(spec), "warnings": pipelines.runner.image_warnings(spec)}

    @app.delete("/v1/pipelines/<name>")
    def delete_pipeline(name: str) -> ResponseReturnValue:
        check_component(name, "pipeline")
        return {"deleted": name, "killed": pipelines.delete(name)}

    @app.post("/v1/pipelines/<name>/stop")
    def stop_pipeline(name: str) -> ResponseReturnValue:
        check_component(name, "pipeline")
        return {"stopped": name, "killed": pipelines.stop_pipeline(name)}

    @app.post("/v1/pipelines/<name>/start")
    def start_pipeline(name: str) -> ResponseReturnValue:
        check_component(name, "pipeline")
        pipelines.start_pipeline(name)
        return {"started": name}

    @app.get("/v1/jobs")
    def list_jobs() -> ResponseReturnValue:
        name = request.args.get("pipeline")
        if name is not None:
            check_component(name, "pipeline")
        return {"jobs": [job_json(j) for j in pipelines.jobs.list(name)]}

    @app.get("/v1/jobs/<job_id>")
    def inspect_job(job_id: str) -> ResponseReturnValue:
        return job_json(pipelines.job(job_id))

    @app.get("/v1/jobs/<job_id>/wait")
    def wait_job(job_id: str) -> ResponseReturnValue:
        return job_json(pipelines.wait_job(job_id, wait_timeout()))

    @app.get("/v1/jobs/<job_id>/logs")
    def job_logs(job_id: str) -> ResponseReturnValue:
        if not flag("follow"):
            return {"logs": pipelines.logs(job_id)}
        job = pipelines.job(job_id)
        pipelines.logs(job_id)  # NotFound when the logs are on another node
        gone = request.environ.get("waitress.client_disconnected", lambda: False)
        release = joblogs.follower_slot()

        def lines() -> Any:
            try:
                yield from joblogs.follow(
                    lambda: pipelines.job(job.id),
                    pipelines.runner.logs_dir(job.pipeline, job.id),
                    gone=gone,
                )
            finally:
                release()

        return Response(lines(), mimetype="text/plain")

    @app.get("/v1/jobs/<job_id>/datums")
    def list_datums(job_id: str) -> ResponseReturnValue:
        job = datums_of(pipelines, pipelines.job(job_id))
        return {"job": job.id, "state": job.state, "datums": [datum_json(d) for d in job.datums]}

    @app.get("/v1/jobs/<job_id>/datums/<datum_id>")
    def inspect_datum(job_id: str, datum_id: str) -> ResponseReturnValue:
        job = datums_of(pipelines, pipelines.job(job_id))
        return datum_json(find_datum(job, datum_id))

    @app.post("/v1/jobs/<job_id>/rerun")
    def rerun_job(job_id: str) -> ResponseReturnValue:
        return job_json(pipelines.rerun(job_id)), 201

    @app.get("/v1/repos/<repo>/commits/<ref>/wait")
    def wait_commit(repo: str, ref: str) -> ResponseReturnValue:
        timeout = wait_timeout()
        parsed = parse_ref(ref)
        commit = pipelines.repos.resolve_commit(repo, parsed)
        named = parsed.base if parsed.plain else None  # a branch wins over a commit prefix
        branch = named if named and pipelines.repos.find_branch(repo, named) else None
        progress = pipelines.wait_commit(repo, commit.id, timeout, branch)
        return {
            "commit": progress.commit,
            "done": progress.done,
            "succeeded": progress.succeeded,
            "pipelines": [asdict(p) for p in progress.pipelines],
        }

    @app.get("/v1/repos/<repo>/commits/<ref>/provenance")
    def provenance(repo: str, ref: str) -> ResponseReturnValue:
        commit = pipelines.repos.resolve_commit(repo, parse_ref(ref))
        upstream, downstream = pipelines.provenance(repo, commit.id)
        return {
            "commit": f"{repo}@{commit.id}",
            "parents": [f"{repo}@{parent}" for parent in commit.parents],
            "upstream": upstream,
            "downstream": downstream,
        }
