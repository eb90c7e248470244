"""Records that cross layers: what the metadata store holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Format a UTC time as RFC 3339 with a ``Z``, e.g. ``2026-11-22T06:30:00.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RepoRecord:
    """A repo: a name and a history of commits on branches."""

    name: str
    created: datetime
    description: str = ""
    replicas: int = 1
    """How many nodes should hold each commit (1 on a single host)."""
    placement: tuple[str, ...] = ()
    """The node ids chosen to hold the repo's commits (empty on a single host)."""


@dataclass(frozen=True)
class BranchRecord:
    """A branch: its head commit (None before the first commit) and working copy state.

    ``clean_generation`` is the btrfs generation of this node's working copy of the branch
    when it last held exactly the content of commit ``working_base`` (None for an empty
    branch); both are None until the working copy exists, and both are node-local: in a
    cluster each node has its own working copy, and ``working_base`` differs from
    ``head`` when another node moved the head since.
    """

    repo: str
    name: str
    head: str | None
    created: datetime
    clean_generation: int | None = None
    working_base: str | None = None


@dataclass(frozen=True)
class CommitRecord:
    """An immutable commit: a read-only snapshot and where it came from."""

    id: str
    repo: str
    branch: str
    parent: str | None
    created: datetime
    message: str
    origin: str
    pruned: bool = False
    """True once gc deleted the snapshot: the record stays, the data is gone."""
    holders: tuple[str, ...] = ()
    """Ids of the nodes whose pool holds the snapshot, sorted."""
    provenance: tuple[str, ...] = ()
    """For a pipeline's output: every input commit it was made from, as ``REPO@ID``."""
    job: str | None = None
    """For a pipeline's output: the id of the job that made it."""
    merge_parents: tuple[str, ...] = ()
    """For a merge commit: the parents after the first (the merged-in heads, in order)."""

    @property
    def parents(self) -> tuple[str, ...]:
        """Every parent, the first (the branch's previous head) first; () for a root."""
        return (self.parent, *self.merge_parents) if self.parent is not None else ()


@dataclass(frozen=True)
class CommitLinks:
    """Where a commit sits in the graph: enough to walk history without its record."""

    id: str
    created: datetime
    parents: tuple[str, ...]
    """As ``CommitRecord.parents``: the first parent first; () for a root."""

    @staticmethod
    def of(commit: CommitRecord) -> CommitLinks:
        """The links of a commit record."""
        return CommitLinks(commit.id, commit.created, commit.parents)


@dataclass(frozen=True)
class RepoSize:
    """What a repo's kept commits wrote, as the store keeps it up to date."""

    bytes: int
    """The sum of the sizes (``MetadataStore.record_commit_size``) of the repo's commits
    that are measured and not pruned."""
    unmeasured: int
    """How many commits not pruned have no size yet (made moments ago, made before sizes
    were kept, imported, or whose parent's snapshot was not here to measure against)."""


@dataclass(frozen=True)
class CommitIntent:
    """A commit being made: written before its snapshot so a crash can be finished.

    ``commit.parent`` is the branch head the commit expects to replace; ``mount_id`` is the
    Docker mount whose last unmount asked for it, released when the commit lands.
    """

    commit: CommitRecord
    mount_id: str | None = None


@dataclass(frozen=True)
class MountRecord:
    """One Docker mount (by Docker's mount ID) of a branch working copy or a commit."""

    id: str
    volume: str
    repo: str
    branch: str | None
    commit: str | None
    created: datetime
    uses: int = 1
    """How many of Docker's Mounts of this ID no Unmount has answered yet: Docker mounts
    a running container's volumes again, with the same ID, for ``docker cp`` and unmounts
    them after, so only the last Unmount of an ID releases it."""


@dataclass(frozen=True)
class VolumeRecord:
    """A Docker volume name that Docker created or mounted through this driver."""

    name: str
    repo: str
    created: datetime


@dataclass(frozen=True)
class Fence:
    """Proof of holding a branch's cluster-wide write lock: the lock key and the etcd
    revision at which this holder created it. A head move made with a fence succeeds only
    while that same lock key still exists with that create revision."""

    key: str
    revision: int
