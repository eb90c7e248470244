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


@dataclass(frozen=True)
class BranchRecord:
    """A branch: its head commit (None before the first commit) and working copy state.

    ``clean_generation`` is the btrfs generation of the branch's working copy when it last
    held exactly the head's content; None until the working copy exists.
    """

    repo: str
    name: str
    head: str | None
    created: datetime
    clean_generation: int | None = None


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


@dataclass(frozen=True)
class VolumeRecord:
    """A Docker volume name that Docker created or mounted through this driver."""

    name: str
    repo: str
    created: datetime
