"""The one codec of records: each record type to and from a plain JSON-able dict.

Every place that stores or sends a record starts from these dicts: the SQLite rows, the
etcd values, the API's JSON and the export file. Each picks the fields it carries, in
its own order (``pick``), so that every format stays exactly as it always was:

* etcd values leave out what the key already says (a repo's name, a commit's repo);
* SQLite rows keep Python's ``isoformat`` times (``+00:00``), as since the first release;
  everything else writes RFC 3339 (``Z``): pass ``time_text`` to choose;
* reading, a field that older data lacks gets the record's default.

Times are read with ``datetime.fromisoformat`` (either form) and, when they carry a
zone, given in UTC (the same instant, so records compare equal either way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    MountRecord,
    RepoRecord,
    VolumeRecord,
    rfc3339,
)

Fields = dict[str, Any]
TimeText = Callable[[datetime], str]


def iso_time(moment: datetime) -> str:
    """A time as ``datetime.isoformat`` writes it (the SQLite store's form)."""
    return moment.isoformat()


def parse_time(text: str) -> datetime:
    """A time written by ``rfc3339`` or ``iso_time``; in UTC when it names a zone."""
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment


def pick(fields: Mapping[str, Any], keys: Iterable[str]) -> Fields:
    """The ``keys`` of ``fields``, in the order of ``keys``."""
    return {key: fields[key] for key in keys}


# repos


def repo_fields(repo: RepoRecord, time_text: TimeText = rfc3339) -> Fields:
    """A repo: name, created, description, replicas, placement."""
    return {
        "name": repo.name,
        "created": time_text(repo.created),
        "description": repo.description,
        "replicas": repo.replicas,
        "placement": list(repo.placement),
    }


def repo_from(fields: Mapping[str, Any], name: str | None = None) -> RepoRecord:
    """The repo of ``repo_fields`` (``name`` when the fields lack it). Raises KeyError
    when a field every version wrote is missing."""
    return RepoRecord(
        name=fields["name"] if name is None else name,
        created=parse_time(fields["created"]),
        description=fields.get("description", ""),
        replicas=int(fields.get("replicas", 1)),
        placement=tuple(fields.get("placement", ())),
    )


# branches


def branch_fields(branch: BranchRecord, time_text: TimeText = rfc3339) -> Fields:
    """A branch: repo, name, head, created, and this node's working copy state as
    ``clean_generation`` and ``working_base``."""
    return {
        "repo": branch.repo,
        "name": branch.name,
        "head": branch.head,
        "created": time_text(branch.created),
        "clean_generation": branch.clean_generation,
        "working_base": branch.working_base,
    }


def branch_from(
    fields: Mapping[str, Any], repo: str | None = None, name: str | None = None
) -> BranchRecord:
    """The branch of ``branch_fields`` (``repo`` and ``name`` when the fields lack them);
    working copy state absent from them is None."""
    return BranchRecord(
        repo=fields["repo"] if repo is None else repo,
        name=fields["name"] if name is None else name,
        head=fields["head"],
        created=parse_time(fields["created"]),
        clean_generation=fields.get("clean_generation"),
        working_base=fields.get("working_base"),
    )


# commits


def commit_fields(commit: CommitRecord, time_text: TimeText = rfc3339) -> Fields:
    """A commit: id, repo, branch, parent, created, message, origin, pruned, holders
    (sorted), provenance, job, merge_parents."""
    return {
        "id": commit.id,
        "repo": commit.repo,
        "branch": commit.branch,
        "parent": commit.parent,
        "created": time_text(commit.created),
        "message": commit.message,
        "origin": commit.origin,
        "pruned": commit.pruned,
        "holders": sorted(commit.holders),
        "provenance": list(commit.provenance),
        "job": commit.job,
        "merge_parents": list(commit.merge_parents),
    }


def commit_from(fields: Mapping[str, Any], repo: str | None = None) -> CommitRecord:
    """The commit of ``commit_fields`` (``repo`` when the fields lack it); pruned,
    holders, provenance, job and merge parents default to none when absent (data
    written before them)."""
    return CommitRecord(
        id=fields["id"],
        repo=fields["repo"] if repo is None else repo,
        branch=fields["branch"],
        parent=fields["parent"],
        created=parse_time(fields["created"]),
        message=fields["message"],
        origin=fields["origin"],
        pruned=bool(fields.get("pruned", False)),
        holders=tuple(fields.get("holders", ())),
        provenance=tuple(fields.get("provenance", ())),
        job=fields.get("job"),
        merge_parents=tuple(fields.get("merge_parents", ())),
    )


def intent_fields(intent: CommitIntent, time_text: TimeText = rfc3339) -> Fields:
    """A commit intent: the commit's repo, the commit (``commit_fields`` without its
    repo) and mount_id."""
    commit = commit_fields(intent.commit, time_text)
    del commit["repo"]
    return {"repo": intent.commit.repo, "commit": commit, "mount_id": intent.mount_id}


def intent_from(fields: Mapping[str, Any]) -> CommitIntent:
    """The intent of ``intent_fields``."""
    return CommitIntent(commit_from(fields["commit"], fields["repo"]), fields["mount_id"])


# mounts and volume names


def mount_fields(mount: MountRecord, time_text: TimeText = rfc3339) -> Fields:
    """A mount: id, volume, repo, branch, commit, created, uses."""
    return {
        "id": mount.id,
        "volume": mount.volume,
        "repo": mount.repo,
        "branch": mount.branch,
        "commit": mount.commit,
        "created": time_text(mount.created),
        "uses": mount.uses,
    }


def mount_from(fields: Mapping[str, Any]) -> MountRecord:
    """The mount of ``mount_fields``; uses 1 when absent."""
    return MountRecord(
        id=fields["id"],
        volume=fields["volume"],
        repo=fields["repo"],
        branch=fields["branch"],
        commit=fields["commit"],
        created=parse_time(fields["created"]),
        uses=int(fields.get("uses", 1)),
    )


def volume_fields(volume: VolumeRecord, time_text: TimeText = rfc3339) -> Fields:
    """A Docker volume name: name, repo, created."""
    return {"name": volume.name, "repo": volume.repo, "created": time_text(volume.created)}


def volume_from(fields: Mapping[str, Any]) -> VolumeRecord:
    """The volume name of ``volume_fields``."""
    return VolumeRecord(
        name=fields["name"], repo=fields["repo"], created=parse_time(fields["created"])
    )
