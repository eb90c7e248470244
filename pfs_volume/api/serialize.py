"""Records as JSON objects: the API's stable field names, in one place."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pfs_volume.cluster.membership import NodeInfo
from pfs_volume.diff import Change
from pfs_volume.filenames import to_wire
from pfs_volume.files import Entry
from pfs_volume.meta import BranchRecord, CommitRecord, MountRecord, RepoRecord, rfc3339
from pfs_volume.meta.codec import branch_fields, commit_fields, mount_fields, pick, repo_fields
from pfs_volume.repos import RepoSummary


def commit_json(commit: CommitRecord, live: Collection[str] | None = None) -> dict[str, Any]:
    """A commit: id, parent, repo, branch, created (RFC 3339 UTC), message, origin, and
    where its data is.

    ``holders`` are the live nodes that hold a copy and ``copies`` their count;
    ``dead_holders`` the listed nodes that are not live now (their copies count only
    once they are back), so under-replication shows. A pruned commit has no copies and
    no holders.

    Args:
        commit: the record.
        live: the ids of the cluster's live nodes; None on a single host, where every
            holder is this node.
    """
    listed = () if commit.pruned else commit.holders
    holders = [h for h in listed if live is None or h in live]
    dead = [h for h in listed if live is not None and h not in live]
    fields = commit_fields(commit)
    return {
        **pick(fields, ("id", "parent")),
        "parents": list(commit.parents),
        **pick(fields, ("repo", "branch", "created", "message", "origin", "pruned")),
        "holders": holders,
        "dead_holders": dead,
        "copies": len(holders),
        **pick(fields, ("provenance", "job")),
    }


def branch_json(branch: BranchRecord) -> dict[str, Any]:
    """A branch: repo, name, head (a commit id or null), created."""
    return pick(branch_fields(branch), ("repo", "name", "head", "created"))


def repo_json(repo: RepoRecord) -> dict[str, Any]:
    """A repo: name, created, description, replicas and placement."""
    return pick(repo_fields(repo), ("name", "created", "description", "replicas", "placement"))


def node_json(node: NodeInfo) -> dict[str, Any]:
    """A node: id, address, state, started, free and total pool bytes."""
    return {
        "id": node.id,
        "address": node.address,
        "state": node.state,
        "started": rfc3339(node.started),
        "free_bytes": node.free_bytes,
        "pool_bytes": node.pool_bytes,
    }


def summary_json(summary: RepoSummary) -> dict[str, Any]:
    """A repo with its branches (each with ``uncommitted_changes`` and its
    ``last_commit_error``, ``{"at", "message", "mount"}`` or null), commit count, size and
    active mounts."""
    return {
        **repo_json(summary.repo),
        "branches": [
            {
                **branch_json(b),
                "uncommitted_changes": b.name in summary.uncommitted,
                "last_commit_error": (
                    summary.commit_errors[b.name].as_json()
                    if b.name in summary.commit_errors
                    else None
                ),
            }
            for b in summary.branches
        ],
        "commit_count": summary.commit_count,
        "size": summary.size,
        "size_unmeasured_commits": summary.size_unmeasured,
        "mounts": [mount_json(m) for m in summary.mounts],
    }


def mount_json(mount: MountRecord) -> dict[str, Any]:
    """A Docker mount: id, volume, repo, branch or commit, created."""
    return pick(mount_fields(mount), ("id", "volume", "repo", "branch", "commit", "created"))


def name_fields(field: str, name: str | None) -> dict[str, Any]:
    """A file name as ``{field: text, field_encoding: "utf-8" | "percent"}`` (see
    ``pfs_volume.filenames``); both None for no name."""
    if name is None:
        return {field: None, f"{field}_encoding": None}
    text, encoding = to_wire(name)
    return {field: text, f"{field}_encoding": encoding}


def entry_json(entry: Entry) -> dict[str, Any]:
    """A folder entry: name, kind, size, mode, and a symlink's target (never followed)."""
    return {
        **name_fields("name", entry.name),
        "kind": entry.kind,
        "size": entry.size,
        "mode": entry.mode,
        **name_fields("target", entry.target),
    }


def change_json(change: Change) -> dict[str, Any]:
    """A change of a diff: path, kind, old_path (renamed), modified (renamed)."""
    return {
        **name_fields("path", change.path),
        "kind": change.kind,
        **name_fields("old_path", change.old_path),
        "modified": change.modified,
    }
