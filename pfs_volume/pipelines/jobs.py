"""Job records: one run of a pipeline over one set of input commits.

Jobs are stored as documents of kind ``job`` (JSON), named by an id that sorts by
creation time, so ``pfs job list`` reads them in order without an index.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pfs_volume.errors import Conflict, InvalidRequest, NotFound
from pfs_volume.meta import MetadataStore, rfc3339, utcnow

KIND = "job"
STATES = ("queued", "running", "success", "failure", "killed")
DONE = ("success", "failure", "killed")
_DATUM_PREFIX = re.compile(r"[0-9a-f]{4,64}")


def new_job_id() -> str:
    """A job id that sorts by creation time: ``20261122T101500-1a2b3c``."""
    return f"{utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class DatumResult:
    """What became of one datum in a job."""

    id: str
    paths: dict[str, str]
    """Input name -> the datum's path in that input ("" for the whole input)."""
    state: str
    """``reused`` (an earlier job's output), ``success`` or ``failure``."""
    seconds: float = 0.0
    exit_code: int | None = None
    job: str = ""
    """The job whose run made the output this datum uses (itself, or an earlier one)."""
    tries: int = 0
    """How many times its container ran in the job that made it (0 for records written
    before pfs counted)."""
    error: str | None = None
    """Why the last try failed (``timed out after N s``, ``exit 3``, an image missing)."""
    started: str | None = None
    """When its first try started (RFC 3339)."""

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DatumResult:
        """A stored datum result; records from before ``tries``, ``error`` and
        ``started`` existed read with their defaults."""
        known = {key: value for key, value in data.items() if key in _DATUM_FIELDS}
        return DatumResult(**known)


_DATUM_FIELDS = frozenset(DatumResult.__dataclass_fields__)


def find_datum(job: JobRecord, wanted: str) -> DatumResult:
    """One of a job's datums, by its id or a unique prefix of it (at least 4 hex digits).

    Raises:
        InvalidRequest: ``wanted`` is not 4 to 64 lowercase hex digits.
        NotFound: no datum of the job starts with it (or the job has none recorded yet).
        Conflict: more than one does.
    """
    if not _DATUM_PREFIX.fullmatch(wanted):
        raise InvalidRequest(
            f"{wanted!r} is not a datum id: give its 64 hex digits or a unique prefix of at "
            "least 4 (pfs datum list JOB shows them)"
        )
    found = [d for d in job.datums if d.id.startswith(wanted)]
    if not found:
        running = "" if job.done else f" (the job is {job.state}: datums appear as they end)"
        raise NotFound(f"job {job.id} has no datum {wanted!r}{running}")
    if len(found) > 1:
        raise Conflict(
            f"{wanted!r} is the start of {len(found)} datums of job {job.id}: "
            + ", ".join(d.id[:12] for d in found[:5])
            + "; give more digits"
        )
    return found[0]


@dataclass(frozen=True)
class JobRecord:
    """A job: its pipeline, its input commits, where it is and what it made."""

    id: str
    pipeline: str
    inputs: dict[str, str]
    """Input name -> ``REPO@COMMIT``."""
    state: str = "queued"
    created: str = field(default_factory=lambda: rfc3339(utcnow()))
    started: str | None = None
    finished: str | None = None
    output: str | None = None
    """``REPO@COMMIT`` of the output commit, once made (None when nothing changed)."""
    error: str | None = None
    node: str = ""
    """The node that ran (or runs) the job."""
    fingerprint: str = ""
    """The spec's fingerprint when the job ran: outputs of a job with another one are
    never reused."""
    datums: tuple[DatumResult, ...] = ()
    branches: dict[str, str] = field(default_factory=dict)
    """Input name -> the branch it was read from (a commit may have been made on
    another: a branch made from another, a fast-forward merge). Empty on jobs of older
    daemons."""
    version: int = 0

    @property
    def done(self) -> bool:
        """True in a final state."""
        return self.state in DONE

    def to_json(self) -> str:
        """The stored form."""
        body = asdict(self)
        body.pop("version")
        return json.dumps(body, sort_keys=True)

    @staticmethod
    def from_json(body: str, version: int) -> JobRecord:
        """Read a stored job."""
        data: dict[str, Any] = json.loads(body)
        data["datums"] = tuple(DatumResult.from_dict(d) for d in data.get("datums", ()))
        return JobRecord(**data, version=version)


class JobStore:
    """Jobs in the metadata store, swapped by version."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def add(self, job: JobRecord) -> JobRecord:
        """Store a new job."""
        version = self.store.put_document(KIND, job.id, job.to_json(), None)
        return replace(job, version=version)

    def save(self, job: JobRecord) -> JobRecord:
        """Store a changed job (compare-and-swap on its version). Raises Conflict."""
        version = self.store.put_document(KIND, job.id, job.to_json(), job.version)
        return replace(job, version=version)

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None."""
        found = self.store.get_document(KIND, job_id)
        return None if found is None else JobRecord.from_json(*found)

    def latest(self, pipeline: str, after: str = "") -> JobRecord | None:
        """The pipeline's newest job with an id above ``after``, read alone."""
        for name, body, version in reversed(self.store.list_documents(KIND)):
            if name <= after:
                return None
            if _may_be(body, "pipeline", pipeline):
                job = JobRecord.from_json(body, version)
                if job.pipeline == pipeline:
                    return job
        return None

    def list(self, pipeline: str | None = None, state: str | None = None) -> list[JobRecord]:
        """Jobs oldest first, of one pipeline or all (and in one state, if given).

        Only the documents that can match are read in full: a job's datums are most of
        its record, and the trigger asks every second."""
        jobs = [
            JobRecord.from_json(body, v)
            for _n, body, v in self.store.list_documents(KIND)
            if _may_be(body, "pipeline", pipeline) and _may_be(body, "state", state)
        ]
        return [
            j
            for j in jobs
            if (pipeline is None or j.pipeline == pipeline) and (state is None or j.state == state)
        ]


def _may_be(body: str, key: str, value: str | None) -> bool:
    """False only when the stored ``body`` (``to_json``'s) cannot have ``key`` equal to
    ``value``: the pair, as ``json.dumps`` writes it, appears nowhere in it (inside a
    string a quote is always escaped, so no file name can fake it; a false True is
    filtered out after the parse)."""
    return value is None or f"{json.dumps(key)}: {json.dumps(value)}" in body
