"""Routes of the pfs HTTP API. Every error is ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, Response, jsonify, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from pfs_volume import package_version
from pfs_volume.api.openapi import openapi_document
from pfs_volume.api.pipelines import add_pipeline_routes
from pfs_volume.api.queries import flag
from pfs_volume.api.serialize import (
    branch_json,
    change_json,
    commit_json,
    entry_json,
    mount_json,
    node_json,
    repo_json,
    summary_json,
)
from pfs_volume.cluster.membership import NodeInfo
from pfs_volume.config import parse_duration
from pfs_volume.doctor import Doctor
from pfs_volume.errors import Conflict, InvalidRequest, MergeConflict, PfsError
from pfs_volume.filenames import query_value
from pfs_volume.files import FileService
from pfs_volume.history import HistoryService
from pfs_volume.meta import CommitRecord
from pfs_volume.names import DEFAULT_BRANCH, check_component, parse_ref
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.repos import FsckReport, RepoService
from pfs_volume.request_limits import MAX_STREAMED_BODY, accepts_body
from pfs_volume.strict_json import loads, read_body
from pfs_volume.transfer import export_repo, import_repo
from pfs_volume.volumes import VolumeService

log = logging.getLogger(__name__)
VERSION = package_version()
"""The daemon's version, as ``/v1/health`` reports it."""

MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class ApiServices:
    """The services the API translates HTTP to, built by the daemon
    (``pfs_volume.daemon.api_services``): the API builds none of its own.

    Attributes:
        nodes: the cluster's live nodes (None on a single host: the node list is this
            host alone).
    """

    repos: RepoService
    volumes: VolumeService
    files: FileService
    history: HistoryService
    pipelines: PipelineService
    doctor: Doctor
    nodes: Callable[[], list[NodeInfo]] | None = None
    fsck: Callable[[bool], FsckReport] | None = None


def create_api_app(services: ApiServices) -> Flask:
    """Build the flask app of the pfs HTTP API over the services the daemon built."""
    repos, volumes, files = services.repos, services.volumes, services.files
    history, pipelines, doctor = services.history, services.pipelines, services.doctor
    nodes = services.nodes
    app = Flask("pfs-api")
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.url_value_preprocessor
    def check_names(_endpoint: str | None, values: dict[str, Any] | None) -> None:
        """Every route's <repo> and <branch> follow the grammar, checked here once."""
        for key in ("repo", "branch"):
            if values and key in values:
                check_component(values[key], key)

    install_error_handlers(app)
    add_pipeline_routes(app, pipelines)

    def live() -> set[str] | None:
        """The ids of the live nodes, for commits' copies (None on a single host)."""
        return None if nodes is None else {node.id for node in nodes()}

    def commit_view(commit: CommitRecord) -> dict[str, Any]:
        """A commit as JSON, its copies counted over the live nodes."""
        return commit_json(commit, live())

    @app.get("/v1/health")
    def health() -> ResponseReturnValue:
        return {"ok": True, "version": VERSION}

    @app.get("/v1/openapi.json")
    def openapi() -> ResponseReturnValue:
        return openapi_document()

    @app.get("/v1/nodes")
    def list_nodes() -> ResponseReturnValue:
        if nodes is None:
            free, total = repos.pool_space()
            here = NodeInfo(repos.node_id, "", repos.now(), free, total)
            return {"cluster": False, "nodes": [node_json(here)]}
        return {"cluster": True, "nodes": [node_json(n) for n in nodes()]}

    @app.get("/v1/repos")
    def list_repos() -> ResponseReturnValue:
        return {"repos": [repo_json(r) for r in repos.list_repos()]}

    @app.post("/v1/repos")
    def create_repo() -> ResponseReturnValue:
        body = json_body({"name": str}, {"description": str, "replicas": int})
        made = repos.create_repo(body["name"], body.get("description", ""), body.get("replicas"))
        return repo_json(made), 201

    @app.get("/v1/repos/<repo>")
    def inspect_repo(repo: str) -> ResponseReturnValue:
        return summary_json(repos.summary(repo))

    @app.delete("/v1/repos/<repo>")
    def delete_repo(repo: str) -> ResponseReturnValue:
        gone = pipelines.delete_repo(repo, force=flag("force"))
        return {"deleted": repo, "pipelines_deleted": gone}

    @app.get("/v1/repos/<repo>/branches")
    def list_branches(repo: str) -> ResponseReturnValue:
        return {"branches": [branch_json(b) for b in repos.list_branches(repo)]}

    @app.post("/v1/repos/<repo>/branches")
    def create_branch(repo: str) -> ResponseReturnValue:
        body = json_body({"name": str}, {"from": str})
        start = parse_ref(body["from"]) if "from" in body else None
        return branch_json(repos.create_branch(repo, body["name"], start)), 201

    @app.delete("/v1/repos/<repo>/branches/<branch>")
    def delete_branch(repo: str, branch: str) -> ResponseReturnValue:
        gone = pipelines.delete_branch(repo, branch, force=flag("force"))
        return {"deleted": f"{repo}/{branch}", "pipelines_deleted": gone}

    @app.post("/v1/repos/<repo>/branches/<branch>/reset")
    def reset_branch(repo: str, branch: str) -> ResponseReturnValue:
        ref = parse_ref(json_body({"ref": str})["ref"])
        reset = repos.reset_branch(repo, branch, ref)
        return {**branch_json(reset.branch), "old_head": reset.old_head}

    @app.post("/v1/repos/<repo>/branches/<branch>/commit")
    def commit_branch(repo: str, branch: str) -> ResponseReturnValue:
        message = json_body({}, {"message": str}).get("message", "")
        repos.refuse_if_owned(repo, branch, "commit to")
        made = repos.commit_working_copy(repo, branch, message or "commit", origin="api")
        return {"commit": commit_view(made) if made else None}

    @app.get("/v1/repos/<repo>/log")
    def log_(repo: str) -> ResponseReturnValue:
        ref = parse_ref(request.args.get("ref", DEFAULT_BRANCH))
        first_parent = flag("first_parent")
        commits = repos.log(repo, ref, _limit(request.args.get("limit")), first_parent)
        here = live()
        return {"commits": [commit_json(c, here) for c in commits]}

    @app.post("/v1/repos/<repo>/gc")
    def gc(repo: str) -> ResponseReturnValue:
        body = json_body({}, {"keep_last": int, "older_than": str})
        if isinstance(body.get("keep_last"), bool):
            raise InvalidRequest("field keep_last must be an int, not bool")
        older = parse_duration(body["older_than"]) if "older_than" in body else None
        report = repos.gc(repo, body.get("keep_last"), older)
        return {
            "pruned": report.pruned,
            "bytes_freed": report.bytes_freed,
            "datum_outputs_freed": pipelines.collect_outputs(),
        }

    @app.post("/v1/repos/<repo>/branches/<branch>/revert")
    def revert(repo: str, branch: str) -> ResponseReturnValue:
        ref = parse_ref(json_body({"commit": str})["commit"])
        return {"commit": commit_view(history.revert(repo, branch, ref))}

    @app.post("/v1/repos/<repo>/branches/<branch>/merge")
    def merge(repo: str, branch: str) -> ResponseReturnValue:
        body = json_body({"from": str}, {"strategy": str})
        source = check_component(body["from"], "branch")
        result = history.merge(repo, source, branch, body.get("strategy"))
        return {
            "outcome": result.outcome,
            "head": result.head,
            "commit": commit_view(result.commit) if result.commit else None,
        }

    @app.get("/v1/repos/<repo>/diff")
    def diff(repo: str) -> ResponseReturnValue:
        base = request.args.get("from")
        diff = repos.diff(repo, parse_ref(_required_arg("to")), parse_ref(base) if base else None)
        return {
            "from": diff.base.id if diff.base is not None else None,
            "to": diff.to.id,
            "changes": [change_json(change) for change in diff.changes],
        }

    @app.get("/v1/repos/<repo>/export")
    def export(repo: str) -> ResponseReturnValue:
        return Response(export_repo(repos, repo), mimetype="application/octet-stream")

    @app.post("/v1/imports")
    @accepts_body(up_to=MAX_STREAMED_BODY)
    def import_() -> ResponseReturnValue:
        name = request.args.get("as") or None
        return repo_json(import_repo(repos, request.stream, name)), 201

    @app.get("/v1/mounts")
    def list_mounts() -> ResponseReturnValue:
        if not flag("stale"):
            return {"mounts": [mount_json(m) for m in volumes.mounts()]}
        if doctor.reconciler is None:
            raise Conflict(
                "stale mounts are those no container of the Docker engine holds, and this "
                "daemon does not ask an engine (--reconcile-interval 0); pfs mount list "
                "shows every mount"
            )
        return {"mounts": [mount_json(m) for m in doctor.reconciler.stale()]}

    @app.get("/v1/doctor")
    def examine() -> ResponseReturnValue:
        return {"findings": [asdict(f) for f in doctor.examine()]}

    @app.post("/v1/fsck")
    def fsck() -> ResponseReturnValue:
        if services.fsck is None:
            raise Conflict("this daemon was built without a pool check")
        report = services.fsck(flag("repair"))
        return {
            "repair": report.repair,
            "repos": report.repos,
            "commits": report.commits,
            "snapshots": report.snapshots,
            "problems": [asdict(p) for p in report.problems],
        }

    @app.delete("/v1/mounts/<mount_id>")
    def release_mount(mount_id: str) -> ResponseReturnValue:
        volumes.release(mount_id)
        return {"released": mount_id}

    @app.get("/v1/repos/<repo>/commits/<ref>/files")
    def list_files(repo: str, ref: str) -> ResponseReturnValue:
        entries = files.list(repo, parse_ref(ref), _path_arg(required=False))
        return {"entries": [entry_json(e) for e in entries]}

    @app.get("/v1/repos/<repo>/commits/<ref>/content")
    def file_content(repo: str, ref: str) -> ResponseReturnValue:
        handle = files.open(repo, parse_ref(ref), _path_arg())
        return send_file(handle, mimetype="application/octet-stream")

    @app.get("/v1/repos/<repo>/commits/<ref>/tar")
    def file_tar(repo: str, ref: str) -> ResponseReturnValue:
        chunks = files.tar(repo, parse_ref(ref), _path_arg(required=False))
        return Response(chunks, mimetype="application/x-tar")

    @app.put("/v1/repos/<repo>/branches/<branch>/files")
    @accepts_body(up_to=MAX_STREAMED_BODY)
    def put_file(repo: str, branch: str) -> ResponseReturnValue:
        result = files.put(
            repo, branch, _path_arg(), request.stream, request.args.get("message", "")
        )
        return {"commit": commit_view(result.commit), "changed": result.changed}

    @app.delete("/v1/repos/<repo>/branches/<branch>/files")
    def remove_file(repo: str, branch: str) -> ResponseReturnValue:
        recursive = flag("recursive")
        made = files.remove(
            repo,
            branch,
            _path_arg(),
            recursive,
            request.args.get("message", ""),
        )
        return {"commit": commit_view(made)}

    @app.get("/v1/repos/<repo>/commits/<ref>")
    def inspect_commit(repo: str, ref: str) -> ResponseReturnValue:
        details = repos.commit_details(repo, parse_ref(ref))
        return {
            **commit_view(details.commit),
            "size": details.size,
            "files_changed": details.changed,
        }

    return app


def install_error_handlers(app: Flask) -> None:
    """Every error as ``{"error": {"code", "message"}}`` with its HTTP status (the form
    ``request_limits`` gives the transport's own refusals by default)."""

    @app.errorhandler(PfsError)
    def pfs_error(exc: PfsError) -> ResponseReturnValue:
        if isinstance(exc, MergeConflict):
            return _error(exc.code, str(exc), exc.status, conflicts=exc.conflicts)
        return _error(exc.code, str(exc), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        return _error(
            (exc.name or "error").lower().replace(" ", "_"), exc.description or "", exc.code or 500
        )

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> ResponseReturnValue:
        log.exception("API request %s %s crashed", request.method, request.path)
        return _error("internal", f"internal error in pfs: {exc}", 500)


def json_body(required: dict[str, type], optional: dict[str, type] | None = None) -> dict[str, Any]:
    """The request's JSON object, with exactly these fields of these types, parsed
    strictly (``strict_json``: size, depth, Unicode and duplicate keys are checked).

    Raises:
        InvalidRequest: saying what is wrong and which fields are accepted.
    """
    accepted = {**required, **(optional or {})}
    shape = ", ".join(f'"{k}": {t.__name__}' for k, t in accepted.items()) or "nothing"
    try:
        data = read_body(request.stream, request.content_length, "the request body")
        body = loads(data, "the request body") if data.strip() else {}
    except InvalidRequest as exc:
        raise type(exc)(f"{exc}; expected a JSON object {{{shape}}}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object with {{{shape}}}")
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; accepted: {{{shape}}}")
    missing = sorted(set(required) - set(body))
    if missing:
        raise InvalidRequest(f"missing field(s) {', '.join(missing)}; expected {{{shape}}}")
    for key, value in body.items():
        if not isinstance(value, accepted[key]):
            raise InvalidRequest(
                f"field {key} must be a {accepted[key].__name__}, not "
                f"{type(value).__name__}; expected {{{shape}}}"
            )
    return body


def _required_arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise InvalidRequest(f"the query parameter {name} is required")
    return value


def _path_arg(required: bool = True) -> str:
    """The ``path`` query parameter, its percent-encoded bytes decoded losslessly (a
    name that is not UTF-8 keeps its bytes; see ``pfs_volume.filenames``)."""
    value = query_value(request.query_string, "path")
    if required and not value:
        raise InvalidRequest(
            "the query parameter path is required (a path from the commit's root; "
            "bytes that are not UTF-8 percent-encoded)"
        )
    return value or ""


def _limit(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdecimal() and len(text) <= 7) or not (
        1 <= int(text) <= MAX_LIMIT
    ):
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def _error(code: str, message: str, status: int, **more: Any) -> ResponseReturnValue:
    body: dict[str, Any] = {"error": {"code": code, "message": message, **more}}
    return jsonify(body), status
