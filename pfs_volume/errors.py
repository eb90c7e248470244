"""One exception hierarchy for pfs.

Every error a user can see is a ``PfsError``. Each class knows its HTTP status and a
stable machine-readable ``code``; the plugin layer sends ``str(error)`` as Docker's
``Err`` text and the API layer sends ``{"error": {"code", "message"}}`` (a merge
conflict adds ``conflicts``). Nothing else
translates errors.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from pfs_volume.pipelines.jobs import DatumResult


class PfsError(Exception):
    """Base class of every error pfs reports to a user."""

    status = 500
    code = "internal"


class InvalidName(PfsError):
    """A volume, repo, branch or ref name does not follow the grammar."""

    status = 400
    code = "invalid_name"


class InvalidRequest(PfsError):
    """A request body, option or argument is malformed."""

    status = 400
    code = "invalid_request"


class UsageError(InvalidRequest):
    """A command line the parser accepted that its verb cannot run (``pfs repo delete``
    off a terminal without ``--yes``): the CLI prints it after the verb's usage line and
    exits 2, as for any bad argument."""

    code = "usage"


class StreamRefused(InvalidRequest):
    """A btrfs send stream would reach outside the commit it makes, or is not one commit's
    stream of a format pfs receives."""

    code = "stream_refused"


class BodyTooLarge(InvalidRequest):
    """A request body is longer than its route accepts."""

    status = 413
    code = "body_too_large"


class NotFound(PfsError):
    """The named repo, branch, commit or volume does not exist."""

    status = 404
    code = "not_found"


class Conflict(PfsError):
    """The request contradicts the current state (exists already, head moved, ...)."""

    status = 409
    code = "conflict"


class MergeConflict(Conflict):
    """A merge or revert that some paths refuse; ``conflicts`` lists them (each a dict
    with the path and what each side did there), sent as the error's ``conflicts``."""

    code = "merge_conflict"

    def __init__(self, message: str, conflicts: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.conflicts = conflicts or []


class InUse(Conflict):
    """The object is mounted by a container and cannot be changed now."""

    code = "in_use"


class ReadOnly(Conflict):
    """A write was asked of a read-only commit."""

    code = "read_only"


class Busy(PfsError):
    """Another operation holds what this one needs for longer than it may wait."""

    status = 503
    code = "busy"


class Unavailable(PfsError):
    """A service pfs depends on (etcd, a peer node) cannot be reached now."""

    status = 503
    code = "unavailable"


class Starting(Unavailable):
    """The daemon is up but still starting (preparing its pool, recovering, reaching
    etcd): the message says what it is doing; try again shortly."""

    code = "starting"


class AmbiguousWrite(Unavailable):
    """A write to the metadata store failed after it may have reached the server: it may
    or may not have been applied. Read the state back before deciding what to do."""

    ambiguous = True


class LeaseLost(Unavailable):
    """An etcd lease is gone (expired, revoked, or never known to this cluster): whatever
    was bound to it is deleted, and whatever it proved (a lock, a registration) no longer
    holds. Unlike its parent this is definite: the write that named the lease was refused,
    not lost in flight."""


class Unauthorized(PfsError):
    """A peer request came without the cluster token, or with a wrong one."""

    status = 401
    code = "unauthorized"


class StorageError(PfsError):
    """The btrfs pool or the metadata store failed."""

    status = 500
    code = "storage"


class PoolFull(StorageError):
    """The pool has no space left for what was asked; the message says how full it is
    and which verbs free space."""

    status = 507
    code = "pool_full"


# btrfs


class DumpFormatError(StorageError):
    """A ``btrfs receive --dump`` listing that this module cannot follow."""


class CloneRefused(StorageError):
    """The two files cannot share extents (see ``CLONE_REFUSED``); copy the bytes."""


class TooManyNames(StorageError):
    """An inode has more names than one ``BTRFS_IOC_INO_PATHS`` answer holds."""


class BtrfsCommandError(StorageError):
    """A storage command exited non-zero; the message holds its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(args)} failed (exit {returncode}): {self.stderr}")


# paths in a tree (safepath: links are never followed)


class UndoFailed(StorageError):
    """A failed write could not be undone: the tree may hold a stray name or folder."""


class BadPath(InvalidRequest):
    """A path that is malformed: a NUL byte, ``..``, a name or the whole too long."""


class LinkInPath(InvalidRequest):
    """A symlink where the path needs a folder: paths never go through links.

    Attributes:
        where: the path up to and including the link, e.g. ``a/link``.
        target: what the link points to.
    """

    def __init__(self, message: str, where: str, target: str) -> None:
        super().__init__(message)
        self.where = where
        self.target = target


class NotAFolder(Conflict):
    """A file (or FIFO, device, ...) where the path needs a folder.

    Attributes:
        where: the path up to and including it. kind: what it is (``file``, ``fifo``).
    """

    def __init__(self, message: str, where: str, kind: str) -> None:
        super().__init__(message)
        self.where = where
        self.kind = kind


class Missing(NotFound):
    """A name in the path does not exist.

    Attributes:
        where: the path up to and including the first missing name.
    """

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


class Changed(Conflict):
    """A name turned into something else between two looks at it: something (a container)
    writes to the tree while pfs walks it."""


class NotRegular(InvalidRequest):
    """Not a regular file where one is needed (a folder, link, FIFO, device, socket).

    Attributes:
        kind: what it is.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


# the plugin protocol


class MalformedRequest(InvalidRequest):
    """The request itself is malformed (not a JSON object of the protocol's shape),
    as opposed to a request the driver refuses. Answered with status 400 (413 for a body
    too long); the driver's own errors with 500, as Docker's plugin helpers do (Docker
    shows the Err of both).

    Args:
        message: what is wrong and what is accepted. status: the HTTP status.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


ERRORS_BY_CODE: dict[str, type[PfsError]] = {
    cls.code: cls
    for cls in (
        PfsError,
        InvalidName,
        InvalidRequest,
        StreamRefused,
        BodyTooLarge,
        NotFound,
        Conflict,
        MergeConflict,
        InUse,
        ReadOnly,
        Busy,
        Unavailable,
        Starting,
        Unauthorized,
        StorageError,
        PoolFull,
    )
}


def error_from_code(code: str, message: str) -> PfsError:
    """Rebuild the exception a server reported, from its code and message.

    Args:
        code: the ``code`` field of an API error body.
        message: the human message.
    Returns:
        An instance of the matching class, ``PfsError`` for an unknown code.
    """
    return ERRORS_BY_CODE.get(code, PfsError)(message)


# pipelines


class TooManyDatums(PfsError):
    """A job would have more than ``datums.MAX_DATUMS`` datums: it fails, naming the
    count."""

    status = 400
    code = "too_many_datums"


class DatumFailed(PfsError):
    """A datum's container exited non-zero, or could not run.

    Attributes:
        results: the job's datum results so far (the failed ones among them), recorded
            with the job's end.
    """

    status = 500
    code = "datum_failed"

    def __init__(self, message: str, results: Sequence[DatumResult] = ()) -> None:
        super().__init__(message)
        self.results: tuple[DatumResult, ...] = tuple(results)


class JobTimedOut(DatumFailed):
    """The job ran past its ``job_timeout``: its containers are removed and nothing is
    committed. Carries the datum results so far, like DatumFailed."""

    code = "job_timed_out"


class OutputMoved(Conflict):
    """The job's output branch is no longer its pipeline's (an update moved the output,
    or the pipeline was deleted, while it ran): nothing was committed."""


class JobKilled(PfsError):
    """The job was stopped from outside (pipeline stopped or deleted, daemon stopping):
    its containers are removed and nothing is committed."""

    status = 409
    code = "job_killed"


class UnreadableAnswer(Unavailable):
    """An error answer whose body is neither a pfs API error nor a Docker ``Err`` (a
    proxy's page, a cut-off body): whatever answered, it was not a pfs daemon speaking."""


class AnswerCutOff(ConnectionError):
    """The CLI's connection: an answer's body stopped before its end (the daemon died or
    failed mid-stream, the connection dropped, a read timed out)."""


def error_from_response(
    status: int, body: bytes | str | dict[str, object] | None, fallback: str = ""
) -> PfsError:
    """Rebuild the exception an HTTP error answer reports: the one place a client (the
    CLI, a peer node) decodes an error body.

    Args:
        status: the answer's HTTP status (400 or more).
        body: the answer's body, raw or already decoded from JSON.
        fallback: the message when the body carries none (default ``HTTP <status>``).
    Returns:
        For a pfs API body ``{"error": {"code", "message"}}`` (both strings), the class
        of its code (``PfsError`` for a code this version does not know; a
        ``MergeConflict`` keeps its ``conflicts``); for any other body, an
        ``UnreadableAnswer``: what answered was not a pfs daemon (a peer's replication
        treats that as a node it cannot reach, never as a verdict on the commit).
    """
    decoded: object = body
    if isinstance(body, bytes | str):
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
    message = fallback or f"HTTP {status}"
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        cls = ERRORS_BY_CODE.get(error["code"], PfsError)
        if cls is MergeConflict:
            conflicts = error.get("conflicts")
            return MergeConflict(error["message"], conflicts if isinstance(conflicts, list) else [])
        return cls(error["message"])
    return UnreadableAnswer(message)
