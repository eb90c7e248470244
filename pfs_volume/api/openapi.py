"""The OpenAPI 3.0 description of the pfs HTTP API, served at /v1/openapi.json.

A test checks that it and the flask routes name exactly the same operations, and throws
generated requests at every one of them.
"""

from __future__ import annotations

from typing import Any

from pfs_volume import __version__

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"}
REF = {"type": "string", "description": "a branch, a commit id or prefix (>= 6 hex), ~N"}
TIME = {"type": "string", "format": "date-time"}
ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *params: dict[str, Any],
    body: dict[str, Any] | None = None,
    status: str = "200",
    media: str = "application/json",
) -> dict[str, Any]:
    content = {media: {"schema": ok or {"type": "string", "format": "binary"}}}
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {
            status: {"description": "done", "content": content},
            "default": {
                "description": "an error",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


NAME_ENCODING_NOTE = (
    "File names are bytes and need not be UTF-8. A name field X comes with X_encoding: "
    '"utf-8" when X is the name itself, "percent" when X is the name\'s bytes '
    "percent-encoded (every byte but ASCII letters, digits, _.-~ and / as %XX), e.g. "
    '{"name": "caf%E9", "name_encoding": "percent"} for the bytes caf\\xe9.'
)
ENCODING = {"type": "string", "enum": ["utf-8", "percent"], "description": NAME_ENCODING_NOTE}
PATH_SCHEMA = {
    "type": "string",
    "description": (
        "a path from the commit's root; each name at most 255 bytes, the whole at most "
        "4096; no '..'. The query is decoded as bytes: a name that is not UTF-8 is given "
        "percent-encoded, as the percent form of a name in JSON is (caf%E9)"
    ),
}
REPO = _path_param("repo", NAME)
BRANCH = _path_param("branch", NAME)
COMMIT_REF = _path_param("ref", REF)
FILE_PATH = _query("path", PATH_SCHEMA)
COMMIT_OUT = _object(commit=_ref("Commit"))
PIPELINE = _path_param("name", NAME)
JOB = _path_param("job_id", {"type": "string"})
STRINGS = {"type": "array", "items": {"type": "string"}}
WAIT_TIMEOUT = _query(
    "timeout",
    {"type": "number", "minimum": 0, "maximum": 30, "description": "seconds (default 30)"},
)
FORCE = _query("force", {"type": "string", "enum": ["true", "false"]})
SPEC_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/yaml": {"schema": {"type": "string"}},
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/health": {
        "get": _op(
            "Is the daemon up, and its version (503 with an error while it starts)",
            _object(ok={"type": "boolean"}, version={"type": "string"}),
        )
    },
    "/v1/openapi.json": {"get": _op("This document", {"type": "object"})},
    "/v1/nodes": {
        "get": _op(
            "Live nodes (this host alone without a cluster)",
            _object(cluster={"type": "boolean"}, nodes={"type": "array", "items": _ref("Node")}),
        )
    },
    "/v1/repos": {
        "get": _op("List repos", _object(repos={"type": "array", "items": _ref("Repo")})),
        "post": _op(
            "Create a repo",
            _ref("Repo"),
            body=_json_body(
                {
                    "name": NAME,
                    "description": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 16},
                },
                ["name"],
            ),
            status="201",
        ),
    },
    "/v1/repos/{repo}": {
        "get": _op("Inspect a repo", _ref("RepoSummary"), REPO),
        "delete": _op(
            "Delete a repo and its data (refused while pipelines use it, unless force)",
            _object(deleted=NAME, pipelines_deleted={"type": "array", "items": NAME}),
            REPO,
            FORCE,
        ),
    },
    "/v1/repos/{repo}/branches": {
        "get": _op(
            "List branches", _object(branches={"type": "array", "items": _ref("Branch")}), REPO
        ),
        "post": _op(
            "Create a branch",
            _ref("Branch"),
            REPO,
            body=_json_body({"name": NAME, "from": REF}, ["name"]),
            status="201",
        ),
    },
    "/v1/repos/{repo}/branches/{branch}": {
        "delete": _op(
            "Delete a branch (refused while pipelines use it, unless force)",
            _object(deleted={"type": "string"}, pipelines_deleted={"type": "array", "items": NAME}),
            REPO,
            BRANCH,
            FORCE,
        ),
    },
    "/v1/repos/{repo}/branches/{branch}/reset": {
        "post": _op(
            "Move a branch head",
            _ref("Branch"),
            REPO,
            BRANCH,
            body=_json_body({"ref": REF}, ["ref"]),
        ),
    },
    "/v1/repos/{repo}/branches/{branch}/commit": {
        "post": _op(
            "Commit a working copy",
            COMMIT_OUT,
            REPO,
            BRANCH,
            body=_json_body({"message": {"type": "string"}}, []),
        ),
    },
    "/v1/repos/{repo}/branches/{branch}/revert": {
        "post": _op(
            "Undo a commit with a new commit",
            COMMIT_OUT,
            REPO,
            BRANCH,
            body=_json_body({"commit": REF}, ["commit"]),
        ),
    },
    "/v1/repos/{repo}/branches/{branch}/merge": {
        "post": _op(
            "Merge another branch into this one",
            _object(
                outcome={"type": "string"}, head=ID, commit={**_ref("Commit"), "nullable": True}
            ),
            REPO,
            BRANCH,
            body=_json_body(
                {"from": NAME, "strategy": {"type": "string", "enum": ["ours", "theirs"]}}, ["from"]
            ),
        ),
    },
    "/v1/repos/{repo}/branches/{branch}/files": {
        "put": {
            **_op(
                "Write a file and commit; when the branch holds exactly these bytes there "
                "already, no commit is made: the answer is the head with changed false",
                _object(commit=_ref("Commit"), changed={"type": "boolean"}),
                REPO,
                BRANCH,
                _query("path", PATH_SCHEMA, required=True),
                _query("message", {"type": "string"}),
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        },
        "delete": _op(
            "Remove a path and commit (a symlink is removed, never followed)",
            COMMIT_OUT,
            REPO,
            BRANCH,
            _query("path", PATH_SCHEMA, required=True),
            _query("recursive", {"type": "string", "enum": ["true", "false"]}),
            _query("message", {"type": "string"}),
        ),
    },
    "/v1/repos/{repo}/log": {
        "get": _op(
            "Commits, newest first: every ancestor, or only first parents",
            _object(commits={"type": "array", "items": _ref("Commit")}),
            REPO,
            _query("ref", REF),
            _query("limit", {"type": "integer", "minimum": 1}),
            _query("first_parent", {"type": "string", "enum": ["true", "false"]}),
        ),
    },
    "/v1/repos/{repo}/commits/{ref}": {
        "get": _op(
            "Inspect a commit",
            {
                "allOf": [
                    _ref("Commit"),
                    _object(
                        size={"type": "integer", "nullable": True},
                        files_changed={"type": "integer", "nullable": True},
                    ),
                ]
            },
            REPO,
            COMMIT_REF,
        ),
    },
    "/v1/repos/{repo}/commits/{ref}/files": {
        "get": _op(
            "List a folder of a commit",
            _object(entries={"type": "array", "items": _ref("Entry")}),
            REPO,
            COMMIT_REF,
            FILE_PATH,
        ),
    },
    "/v1/repos/{repo}/commits/{ref}/content": {
        "get": _op(
            "Read a regular file of a commit (a symlink, FIFO, device or socket is refused)",
            None,
            REPO,
            COMMIT_REF,
            _query("path", PATH_SCHEMA, required=True),
            media="application/octet-stream",
        ),
    },
    "/v1/repos/{repo}/commits/{ref}/tar": {
        "get": _op(
            "A folder of a commit as a tar stream",
            None,
            REPO,
            COMMIT_REF,
            FILE_PATH,
            media="application/x-tar",
        ),
    },
    "/v1/repos/{repo}/gc": {
        "post": _op(
            "Prune old commits' data",
            _object(
                pruned={"type": "array", "items": ID},
                bytes_freed={"type": "integer"},
                datum_outputs_freed={"type": "integer"},
            ),
            REPO,
            body=_json_body(
                {"keep_last": {"type": "integer", "minimum": 0}, "older_than": {"type": "string"}},
                [],
            ),
        ),
    },
    "/v1/repos/{repo}/diff": {
        "get": _op(
            "What changed between two commits",
            _object(
                **{
                    "from": {**ID, "nullable": True},
                    "to": ID,
                    "changes": {"type": "array", "items": _ref("Change")},
                }
            ),
            REPO,
            _query("to", REF, required=True),
            _query("from", REF),
        ),
    },
    "/v1/repos/{repo}/export": {
        "get": _op("The repo with its history as an export file", None, REPO),
    },
    "/v1/imports": {
        "post": {
            **_op(
                "Import an export file as a new repo",
                _ref("Repo"),
                _query("as", NAME),
                status="201",
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        },
    },
    "/v1/pipelines": {
        "get": _op(
            "List pipelines", _object(pipelines={"type": "array", "items": _ref("Pipeline")})
        ),
        "post": _op(
            "Create a pipeline (JSON or YAML spec; every problem is listed)",
            _ref("Pipeline"),
            body=SPEC_BODY,
            status="201",
        ),
    },
    "/v1/pipelines/{name}": {
        "get": _op("Inspect a pipeline and its latest jobs", _ref("Pipeline"), PIPELINE),
        "put": _op(
            "Replace a pipeline's spec (reprocess=true: the next job runs every datum)",
            _ref("Pipeline"),
            PIPELINE,
            _query("reprocess", {"type": "string", "enum": ["true", "false"]}),
            body=SPEC_BODY,
        ),
        "delete": _op(
            "Delete a pipeline, killing its running job",
            _object(deleted={"type": "string"}, killed=STRINGS),
            PIPELINE,
        ),
    },
    "/v1/pipelines/{name}/stop": {
        "post": _op(
            "Stop a pipeline: its running job is killed, no job is queued",
            _object(stopped={"type": "string"}, killed=STRINGS),
            PIPELINE,
        )
    },
    "/v1/pipelines/{name}/start": {
        "post": _op("Start a stopped pipeline", _object(started={"type": "string"}), PIPELINE)
    },
    "/v1/jobs": {
        "get": _op(
            "List jobs, oldest first",
            _object(jobs={"type": "array", "items": _ref("Job")}),
            _query("pipeline", NAME),
        )
    },
    "/v1/jobs/{job_id}": {"get": _op("Inspect a job", _ref("Job"), JOB)},
    "/v1/jobs/{job_id}/wait": {
        "get": _op(
            "The job once it has ended, or as it is after timeout seconds",
            _ref("Job"),
            JOB,
            WAIT_TIMEOUT,
        )
    },
    "/v1/jobs/{job_id}/logs": {
        "get": _op(
            "A job's container output by datum (written while datums run). follow=true: "
            "text/plain lines 'DATUM12 | line' as they come, until the job ends (at most "
            "1 h; 2 follows at once)",
            _object(logs={"type": "object", "additionalProperties": {"type": "string"}}),
            JOB,
            _query("follow", {"type": "string", "enum": ["true", "false"]}),
        )
    },
    "/v1/jobs/{job_id}/datums": {
        "get": _op(
            "A job's datums (of a running job: those that ended so far)",
            _object(
                job={"type": "string"},
                state={"type": "string"},
                datums={"type": "array", "items": _ref("Datum")},
            ),
            JOB,
        )
    },
    "/v1/jobs/{job_id}/datums/{datum_id}": {
        "get": _op(
            "One datum of a job, by id or unique prefix (>= 4 hex)",
            _ref("Datum"),
            JOB,
            _path_param("datum_id", {"type": "string", "pattern": "^[0-9a-f]{4,64}$"}),
        )
    },
    "/v1/jobs/{job_id}/rerun": {
        "post": _op("Run a job again on the same inputs", _ref("Job"), JOB, status="201")
    },
    "/v1/repos/{repo}/commits/{ref}/wait": {
        "get": _op(
            "Where every pipeline downstream of a commit is, once all are done with it or "
            "after timeout seconds",
            _object(
                commit={"type": "string"},
                done={"type": "boolean"},
                succeeded={"type": "boolean"},
                pipelines={
                    "type": "array",
                    "items": _object(
                        pipeline={"type": "string"},
                        state={
                            "type": "string",
                            "enum": [
                                "success",
                                "failure",
                                "killed",
                                "queued",
                                "running",
                                "pending",
                                "stopped",
                                "blocked",
                                "skipped",
                            ],
                        },
                        job={"type": "string", "nullable": True},
                        output={"type": "string", "nullable": True},
                        detail={"type": "string", "nullable": True},
                    ),
                },
            ),
            REPO,
            COMMIT_REF,
            WAIT_TIMEOUT,
        )
    },
    "/v1/repos/{repo}/commits/{ref}/provenance": {
        "get": _op(
            "What made a commit and what it fed",
            _object(
                commit={"type": "string"},
                parents={"type": "array", "items": {"type": "string"}},
                upstream={"type": "array", "items": {"type": "string"}},
                downstream={"type": "array", "items": {"type": "string"}},
            ),
            REPO,
            COMMIT_REF,
        )
    },
    "/v1/mounts": {
        "get": _op(
            "Mounts Docker holds (stale=true: only those no container holds)",
            _object(mounts={"type": "array", "items": _ref("Mount")}),
            _query("stale", {"type": "string", "enum": ["true", "false"]}),
        ),
    },
    "/v1/doctor": {
        "get": _op(
            "Stuck or suspicious state, each with the command that fixes it",
            _object(findings={"type": "array", "items": _ref("Finding")}),
        ),
    },
    "/v1/fsck": {
        "post": _op(
            "Check the pool against the metadata (repair=true: fix what can be fixed "
            "without losing data)",
            _object(
                repair={"type": "boolean"},
                repos={"type": "integer"},
                commits={"type": "integer"},
                snapshots={"type": "integer"},
                problems={"type": "array", "items": _ref("Problem")},
            ),
            _query("repair", {"type": "string", "enum": ["true", "false"]}),
        ),
    },
    "/v1/mounts/{mount_id}": {
        "delete": _op(
            "Release a mount as Docker's Unmount would",
            _object(released={"type": "string"}),
            _path_param("mount_id", {"type": "string"}),
        ),
    },
}

SCHEMAS: dict[str, Any] = {
    "Problem": _object(
        kind={"type": "string"},
        repo={"type": "string"},
        what={"type": "string"},
        action={"type": "string"},
        repaired={"type": "boolean"},
    ),
    "Finding": _object(
        severity={"type": "string", "enum": ["error", "warning", "note"]},
        what={"type": "string"},
        fix={"type": "string"},
    ),
    "Error": _object(error=_object(code={"type": "string"}, message={"type": "string"})),
    "Repo": _object(
        name=NAME,
        created=TIME,
        description={"type": "string"},
        replicas={"type": "integer"},
        placement={"type": "array", "items": {"type": "string"}},
    ),
    "Node": _object(
        id={"type": "string"},
        address={"type": "string"},
        state={"type": "string"},
        started=TIME,
        free_bytes={"type": "integer"},
        pool_bytes={"type": "integer"},
    ),
    "RepoSummary": _object(
        name=NAME,
        created=TIME,
        description={"type": "string"},
        replicas={"type": "integer"},
        placement={"type": "array", "items": {"type": "string"}},
        branches={"type": "array", "items": _ref("BranchState")},
        commit_count={"type": "integer"},
        size={
            "type": "integer",
            "nullable": True,
            "description": "bytes of file data the repo's kept (not pruned) commits wrote, "
            "each counted in the commit that wrote it (measured once, after the commit); "
            "null for a repo made before pfs kept sizes",
        },
        size_unmeasured_commits={
            "type": "integer",
            "description": "kept commits not counted in size yet",
        },
        mounts={"type": "array", "items": _ref("Mount")},
    ),
    "Branch": _object(repo=NAME, name=NAME, head={**ID, "nullable": True}, created=TIME),
    "BranchState": _object(
        repo=NAME,
        name=NAME,
        head={**ID, "nullable": True},
        created=TIME,
        uncommitted_changes={"type": "boolean"},
        last_commit_error={
            **_object(
                at=TIME,
                message={"type": "string"},
                mount={"type": "string", "nullable": True},
            ),
            "nullable": True,
        },
    ),
    "Commit": _object(
        id=ID,
        parent={**ID, "nullable": True},
        parents={"type": "array", "items": ID},
        repo=NAME,
        branch=NAME,
        created=TIME,
        message={"type": "string"},
        origin={"type": "string"},
        pruned={"type": "boolean"},
        holders={"type": "array", "items": {"type": "string"}},
        dead_holders={"type": "array", "items": {"type": "string"}},
        copies={"type": "integer"},
        provenance={"type": "array", "items": {"type": "string"}},
        job={"type": "string", "nullable": True},
    ),
    "Mount": _object(
        id={"type": "string"},
        volume={"type": "string"},
        repo=NAME,
        branch={**NAME, "nullable": True},
        commit={**ID, "nullable": True},
        created=TIME,
    ),
    "Pipeline": {
        "type": "object",
        "description": "a pipeline spec, every default filled in; the answers to create "
        "and update add warnings (e.g. the image is not on the engine: pfs never pulls)",
        "properties": {"warnings": {"type": "array", "items": {"type": "string"}}},
    },
    "Job": _object(
        id={"type": "string"},
        pipeline=NAME,
        inputs={"type": "object", "additionalProperties": {"type": "string"}},
        state={"type": "string", "enum": ["queued", "running", "success", "failure", "killed"]},
        created=TIME,
        started={**TIME, "nullable": True},
        finished={**TIME, "nullable": True},
        output={"type": "string", "nullable": True},
        error={"type": "string", "nullable": True},
        fingerprint={"type": "string"},
        branches={
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "input name -> the branch the input commit was read from",
        },
        datums={"type": "array", "items": _ref("Datum")},
    ),
    "Datum": _object(
        id={"type": "string", "pattern": "^[0-9a-f]{64}$"},
        paths={"type": "object", "additionalProperties": {"type": "string"}},
        state={"type": "string", "enum": ["reused", "success", "failure"]},
        seconds={"type": "number"},
        exit_code={"type": "integer", "nullable": True},
        job={"type": "string"},
        tries={"type": "integer"},
        error={"type": "string", "nullable": True},
        started={**TIME, "nullable": True},
    ),
    "Change": _object(
        path={"type": "string"},
        path_encoding=ENCODING,
        kind={"type": "string", "enum": ["added", "modified", "deleted", "renamed"]},
        old_path={"type": "string", "nullable": True},
        old_path_encoding={**ENCODING, "nullable": True},
        modified={"type": "boolean"},
    ),
    "Entry": _object(
        name={"type": "string"},
        name_encoding=ENCODING,
        kind={"type": "string", "enum": ["file", "dir", "symlink", "other"]},
        size={"type": "integer"},
        mode={"type": "string"},
        target={"type": "string", "nullable": True, "description": "a symlink's target"},
        target_encoding={**ENCODING, "nullable": True},
    ),
}


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "pfs API", "version": __version__},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
