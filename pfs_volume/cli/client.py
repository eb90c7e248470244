"""A client of the pfs HTTP API, over the daemon's unix socket or plain HTTP.

``ApiClient`` has one method per ``/v1`` route the CLI calls (``cli/routes.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Iterator

from pfs_volume.cli import routes
from pfs_volume.cli.connection import Answer, send
from pfs_volume.errors import AnswerCutOff, PfsError, error_from_response

# typing and dataclasses cost a short-lived CLI process about as much as its call
# (bench/cli_startup.py): the annotations below are for mypy only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

REQUEST_TIMEOUT = 120.0


@contextlib.contextmanager
def reading_answer(what: str) -> Iterator[None]:
    """Read a streamed answer in this block: one that breaks part-way becomes a
    ``PfsError`` saying so (never a traceback).

    Args:
        what: what the answer holds, for the message ("the tar of r@master").
    Raises:
        PfsError: the answer was cut off.
    """
    try:
        yield
    except AnswerCutOff as exc:
        raise PfsError(
            f"the answer was cut off: {what} ended part-way ({exc.__class__.__name__}); the "
            "daemon failed or the connection dropped: see the daemon's log, and try again"
        ) from exc


@contextlib.contextmanager
def _utf8_only() -> Iterator[None]:
    """Build and send a request in this block: a name, id or query value of the command
    line that is not UTF-8 (the shell passes any bytes; Python holds the others as lone
    surrogates, which no URL can carry) becomes a ``PfsError`` naming it, never a
    ``UnicodeEncodeError`` traceback. File paths are sent as bytes and never get here.

    Raises:
        PfsError: a text that is not UTF-8.
    """
    try:
        yield
    except UnicodeEncodeError as exc:
        from pfs_volume.filenames import printable  # imports urllib.parse: the rare case

        text = exc.object if isinstance(exc.object, str) else repr(exc.object)
        raise PfsError(
            f"'{printable(text)}' holds bytes that are not UTF-8; names, ids and "
            "option values must be UTF-8 text (only a file's PATH may hold other bytes)"
        ) from None


"""Every route the client calls (the constants above)."""


def _flag(value: bool) -> str | None:
    """An optional true flag of a query: ``true``, or left out."""
    return "true" if value else None


class ApiClient:
    """Calls ``/v1/...`` on a daemon.

    Args:
        address: a unix socket path (``/run/pfs/api.sock``) or an ``http://`` URL.
    """

    def __init__(self, address: str) -> None:
        self.address = address

    # The transport: every method below goes through one of these two.

    def request(self, method: str, route: str, /, **params: Any) -> Any:
        """Call the API and return the decoded JSON body.

        Args:
            method: the HTTP method.
            route: the path, ``/v1/...``.
            params: the query (None values left out); ``json`` a JSON body, ``data`` raw.
        Raises:
            PfsError: (its subclass) for an error the daemon reported, or no daemon reached.
        """
        body = params.pop("json", None)
        raw = params.pop("data", None)
        headers = {}
        if body is not None:
            raw = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = send(self.address, method, route, params, raw, headers, REQUEST_TIMEOUT)
            with reading_answer(f"the answer to {method} {route}"):
                content = response.content
        except OSError as exc:
            raise PfsError(
                f"cannot reach the pfs daemon at {self.address} ({_failure(exc)}); "
                "is 'pfs serve' running? --api or PFS_API point elsewhere"
            ) from exc
        try:
            body = json.loads(content)
        except ValueError:
            raise PfsError(
                f"the daemon at {self.address} answered {response.status_code} without JSON"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, body, fallback=str(body))
        return body

    def stream(
        self,
        method: str,
        route: str,
        /,
        data: IO[bytes] | io.RawIOBase | Iterable[bytes] | None = None,
        timeout: float = REQUEST_TIMEOUT,
        **params: Any,
    ) -> Answer:
        """Call the API for a binary answer (or with a streamed body); the open response.
        ``timeout`` bounds the wait for each read (a followed log may be quiet longer).

        Raises:
            PfsError: as ``request``.
        """
        try:
            response = send(self.address, method, route, params, data, {}, timeout)
            if response.status_code >= 400:
                raise error_from_response(response.status_code, response.content, response.reason)
        except OSError as exc:
            raise PfsError(
                f"cannot reach the pfs daemon at {self.address} ({_failure(exc)})"
            ) from exc
        return response

    def _call(self, route: routes.Route, parts: dict[str, str] | None = None, **params: Any) -> Any:
        """``request`` on ``route`` with its path ``parts``; the decoded JSON answer."""
        with _utf8_only():
            return self.request(route.method, route.path(**(parts or {})), **params)

    def _open(
        self,
        route: routes.Route,
        parts: dict[str, str],
        data: IO[bytes] | io.RawIOBase | None = None,
        timeout: float = REQUEST_TIMEOUT,
        **params: Any,
    ) -> Answer:
        """``stream`` on ``route`` with its path ``parts``; the open answer."""
        with _utf8_only():
            return self.stream(
                route.method, route.path(**parts), data=data, timeout=timeout, **params
            )

    # Nodes, mounts, doctor.

    def list_nodes(self) -> list[dict[str, Any]]:
        """The live nodes of the cluster."""
        return list(self._call(routes.NODES)["nodes"])

    def list_mounts(self, stale: bool) -> list[dict[str, Any]]:
        """The mounts Docker holds; with ``stale``, only those no container holds."""
        return list(self._call(routes.MOUNTS, stale="true" if stale else "false")["mounts"])

    def release_mount(self, mount_id: str) -> dict[str, Any]:
        """Release a mount as Docker's Unmount would."""
        return dict(self._call(routes.MOUNT_RELEASE, {"mount_id": mount_id}))

    def doctor(self) -> list[dict[str, Any]]:
        """The daemon's findings of stuck or suspicious state."""
        return list(self._call(routes.DOCTOR)["findings"])

    def fsck(self, repair: bool) -> dict[str, Any]:
        """Check the pool against the metadata (with ``repair``, fix what it can)."""
        return dict(self._call(routes.FSCK, repair=_flag(repair)))

    # Repos.

    def list_repos(self) -> list[dict[str, Any]]:
        """Every repo."""
        return list(self._call(routes.REPOS)["repos"])

    def create_repo(self, name: str, description: str, replicas: int | None) -> dict[str, Any]:
        """Create an empty repo; ``replicas`` None keeps the node's default."""
        body: dict[str, Any] = {"name": name, "description": description}
        if replicas is not None:
            body["replicas"] = replicas
        return dict(self._call(routes.REPO_CREATE, json=body))

    def inspect_repo(self, name: str) -> dict[str, Any]:
        """A repo with its branches, commit count, size and mounts."""
        return dict(self._call(routes.REPO, {"repo": name}))

    def delete_repo(self, name: str, force: bool) -> dict[str, Any]:
        """Delete a repo (with ``force``, the pipelines that use it too)."""
        return dict(self._call(routes.REPO_DELETE, {"repo": name}, force=_flag(force)))

    def export_repo(self, name: str) -> Answer:
        """The open answer streaming a repo's export file."""
        return self._open(routes.REPO_EXPORT, {"repo": name})

    def import_repo(self, data: IO[bytes] | io.RawIOBase, name: str | None) -> dict[str, Any]:
        """Import an export file read from ``data``, under ``name`` when given."""
        query: dict[str, Any] = {"as": name}
        return dict(self._open(routes.IMPORT, {}, data=data, **query).json())

    def gc(self, repo: str, keep_last: int | None, older_than: str | None) -> dict[str, Any]:
        """Prune old commits' data (and unused datum outputs of pipelines)."""
        limits = (("keep_last", keep_last), ("older_than", older_than))
        body = {name: value for name, value in limits if value is not None}
        return dict(self._call(routes.GC, {"repo": repo}, json=body))

    # Branches and history.

    def list_branches(self, repo: str) -> list[dict[str, Any]]:
        """A repo's branches with their heads."""
        return list(self._call(routes.BRANCHES, {"repo": repo})["branches"])

    def create_branch(self, repo: str, name: str, start: str | None) -> dict[str, Any]:
        """Create a branch at the ref ``start`` (master when None)."""
        body = {"name": name} if start is None else {"name": name, "from": start}
        return dict(self._call(routes.BRANCH_CREATE, {"repo": repo}, json=body))

    def delete_branch(self, repo: str, name: str, force: bool) -> dict[str, Any]:
        """Delete a branch (with ``force``, the pipelines that use it too)."""
        parts = {"repo": repo, "branch": name}
        return dict(self._call(routes.BRANCH_DELETE, parts, force=_flag(force)))

    def reset_branch(self, repo: str, name: str, ref: str) -> dict[str, Any]:
        """Move a branch's head to ``ref``."""
        return dict(
            self._call(routes.BRANCH_RESET, {"repo": repo, "branch": name}, json={"ref": ref})
        )

    def commit(self, repo: str, branch: str, message: str) -> dict[str, Any]:
        """Commit what changed in a branch's working copy."""
        parts = {"repo": repo, "branch": branch}
        return dict(self._call(routes.BRANCH_COMMIT, parts, json={"message": message}))

    def revert(self, repo: str, branch: str, commit: str) -> dict[str, Any]:
        """Commit on ``branch`` what undoes ``commit``."""
        parts = {"repo": repo, "branch": branch}
        return dict(self._call(routes.BRANCH_REVERT, parts, json={"commit": commit}))

    def merge(self, repo: str, into: str, source: str, strategy: str | None) -> dict[str, Any]:
        """Merge branch ``source`` into ``into``; ``strategy`` settles conflicts."""
        body = {"from": source, **({"strategy": strategy} if strategy else {})}
        return dict(self._call(routes.BRANCH_MERGE, {"repo": repo, "branch": into}, json=body))

    # Commits.

    def log(
        self, repo: str, ref: str, limit: int | None, first_parent: bool
    ) -> list[dict[str, Any]]:
        """Commits from ``ref``, newest first."""
        query: dict[str, Any] = {"ref": ref, "limit": limit, "first_parent": _flag(first_parent)}
        return list(self._call(routes.LOG, {"repo": repo}, **query)["commits"])

    def inspect_commit(self, repo: str, ref: str) -> dict[str, Any]:
        """One commit."""
        return dict(self._call(routes.COMMIT, {"repo": repo, "ref": ref}))

    def diff(self, repo: str, to: str, start: str | None) -> dict[str, Any]:
        """What changed from ``start`` to ``to`` (in ``to`` when ``start`` is None)."""
        query = {"to": to} if start is None else {"from": start, "to": to}
        return dict(self._call(routes.DIFF, {"repo": repo}, **query))

    def provenance(self, repo: str, ref: str) -> dict[str, Any]:
        """What produced a commit and which commits it fed."""
        return dict(self._call(routes.COMMIT_PROVENANCE, {"repo": repo, "ref": ref}))

    def wait_commit(self, repo: str, ref: str, timeout: float) -> dict[str, Any]:
        """Where the pipelines downstream of a commit are, blocking up to ``timeout`` s
        for them to be done."""
        parts = {"repo": repo, "ref": ref}
        return dict(self._call(routes.COMMIT_WAIT, parts, timeout=f"{timeout:g}"))

    # Files.

    def list_files(self, repo: str, ref: str, path: str) -> list[dict[str, Any]]:
        """The entries of a folder of a commit."""
        parts = {"repo": repo, "ref": ref}
        return list(self._call(routes.COMMIT_FILES, parts, path=_wire(path))["entries"])

    def file_content(self, repo: str, ref: str, path: str) -> Answer:
        """The open answer streaming a regular file of a commit."""
        return self._open(routes.COMMIT_CONTENT, {"repo": repo, "ref": ref}, path=_wire(path))

    def file_tar(self, repo: str, ref: str, path: str) -> Answer:
        """The open answer streaming a tar of a folder (or file) of a commit."""
        return self._open(routes.COMMIT_TAR, {"repo": repo, "ref": ref}, path=_wire(path))

    def put_file(
        self, repo: str, branch: str, path: str, data: IO[bytes], message: str
    ) -> dict[str, Any]:
        """Write ``data`` to ``path`` on a branch and commit it."""
        response = self._open(
            routes.FILE_PUT,
            {"repo": repo, "branch": branch},
            data=data,
            path=_wire(path),
            message=message or None,
        )
        return dict(response.json())

    def remove_file(
        self, repo: str, branch: str, path: str, recursive: bool, message: str
    ) -> dict[str, Any]:
        """Remove ``path`` from a branch and commit it."""
        return dict(
            self._call(
                routes.FILE_REMOVE,
                {"repo": repo, "branch": branch},
                path=_wire(path),
                recursive="true" if recursive else "false",
                message=message or None,
            )
        )

    # Pipelines, jobs, datums.

    def list_pipelines(self) -> list[dict[str, Any]]:
        """Every pipeline's spec."""
        return list(self._call(routes.PIPELINES)["pipelines"])

    def create_pipeline(self, spec: bytes) -> dict[str, Any]:
        """Create a pipeline from its spec file's bytes (JSON or YAML)."""
        return dict(self._call(routes.PIPELINE_CREATE, data=spec))

    def inspect_pipeline(self, name: str) -> dict[str, Any]:
        """A pipeline's spec and latest jobs."""
        return dict(self._call(routes.PIPELINE, {"name": name}))

    def update_pipeline(self, name: str, spec: bytes, reprocess: bool) -> dict[str, Any]:
        """Replace a pipeline's spec; ``reprocess`` runs every datum again."""
        parts = {"name": name}
        return dict(
            self._call(routes.PIPELINE_UPDATE, parts, data=spec, reprocess=_flag(reprocess))
        )

    def delete_pipeline(self, name: str) -> dict[str, Any]:
        """Delete a pipeline."""
        return dict(self._call(routes.PIPELINE_DELETE, {"name": name}))

    def stop_pipeline(self, name: str) -> dict[str, Any]:
        """Stop a pipeline, killing its running job."""
        return dict(self._call(routes.PIPELINE_STOP, {"name": name}))

    def start_pipeline(self, name: str) -> dict[str, Any]:
        """Start a stopped pipeline."""
        return dict(self._call(routes.PIPELINE_START, {"name": name}))

    def list_jobs(self, pipeline: str | None) -> list[dict[str, Any]]:
        """Jobs, oldest first; only ``pipeline``'s when given."""
        return list(self._call(routes.JOBS, pipeline=pipeline)["jobs"])

    def inspect_job(self, job_id: str) -> dict[str, Any]:
        """One job."""
        return dict(self._call(routes.JOB, {"job_id": job_id}))

    def wait_job(self, job_id: str, timeout: float) -> dict[str, Any]:
        """A job, once it ended or after ``timeout`` s, whichever comes first."""
        return dict(self._call(routes.JOB_WAIT, {"job_id": job_id}, timeout=f"{timeout:g}"))

    def rerun_job(self, job_id: str) -> dict[str, Any]:
        """Queue a job again on the same input commits."""
        return dict(self._call(routes.JOB_RERUN, {"job_id": job_id}))

    def job_logs(self, job_id: str) -> dict[str, str]:
        """Each datum's container output so far, by datum id."""
        return dict(self._call(routes.JOB_LOGS, {"job_id": job_id})["logs"])

    def follow_job_logs(self, job_id: str, read_timeout: float) -> Answer:
        """The open answer streaming a job's output lines until it ends; each read
        waits up to ``read_timeout`` s."""
        return self._open(routes.JOB_LOGS, {"job_id": job_id}, timeout=read_timeout, follow="true")

    def list_datums(self, job_id: str) -> dict[str, Any]:
        """A job's state and the datums that ended so far."""
        return dict(self._call(routes.DATUMS, {"job_id": job_id}))

    def inspect_datum(self, job_id: str, datum_id: str) -> dict[str, Any]:
        """One datum of a job, by id or unique prefix."""
        return dict(self._call(routes.DATUM, {"job_id": job_id, "datum_id": datum_id}))


def _failure(exc: BaseException) -> str:
    """What went wrong reaching the daemon, named as requests named it (the words of
    the CLI's message did not change with the transport)."""
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"
    return "ConnectionError"


def _wire(path: str) -> bytes:
    """A file path as its bytes on disk, the form the API's ``path`` query takes."""
    return os.fsencode(path)
