"""Job records: one run of a pipeline over one set of input commits.

Jobs are stored as documents of kind ``job`` (JSON), named by an id that sorts by
creation time, so ``pfs job list`` reads them in order without an index.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pfs_volume.meta import MetadataStore, rfc3339, utcnow

KIND = "job"
STATES = ("queued", "running", "success", "failure", "killed")
DONE = ("success", "failure", "killed")


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
        data["datums"] = tuple(DatumResult(**d) for d in data.get("datums", ()))
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

    def list(self, pipeline: str | None = None) -> list[JobRecord]:
        """Jobs oldest first, of one pipeline or all."""
        jobs = [JobRecord.from_json(body, v) for _n, body, v in self.store.list_documents(KIND)]
        return [j for j in jobs if pipeline is None or j.pipeline == pipeline]
