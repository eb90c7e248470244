"""The SQLite store's layout: its tables, how a database of an earlier version is brought
up to them, and records as rows (through the record codec, ``pfs_volume.meta.codec``).

Rows keep the forms of the first release: times as Python's ``isoformat``, holders and
placement as JSON lists, and a commit's pipeline and merge fields together as one JSON
object in ``lineage`` (``{}`` for other commits; rows written before a key existed lack
it). A store made before commits listed their holders gets this host as the holder of
every commit whose data was not pruned (SQLite serves a single host, which made them
all; a copy counts only when it is listed).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from pfs_volume.errors import StorageError
from pfs_volume.meta.codec import (
    branch_fields,
    branch_from,
    commit_fields,
    commit_from,
    iso_time,
    mount_fields,
    mount_from,
    parse_time,
    pick,
    repo_fields,
    repo_from,
    volume_fields,
    volume_from,
)
from pfs_volume.meta.records import (
    BranchRecord,
    CommitLinks,
    CommitRecord,
    MountRecord,
    RepoRecord,
    VolumeRecord,
)
from pfs_volume.private_files import PRIVATE_FILE, create_private_file, make_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY, created TEXT NOT NULL, description TEXT NOT NULL,
    replicas INTEGER NOT NULL DEFAULT 1, placement TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS branches (
    repo TEXT NOT NULL REFERENCES repos(name), name TEXT NOT NULL, head TEXT,
    created TEXT NOT NULL, clean_generation INTEGER, working_base TEXT,
    PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL REFERENCES repos(name), id TEXT NOT NULL, branch TEXT NOT NULL,
    parent TEXT, created TEXT NOT NULL, message TEXT NOT NULL, origin TEXT NOT NULL,
    pruned INTEGER NOT NULL DEFAULT 0, holders TEXT NOT NULL DEFAULT '[]',
    lineage TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (repo, id));
CREATE INDEX IF NOT EXISTS commits_by_time ON commits (repo, created);
CREATE INDEX IF NOT EXISTS commits_in_log_order ON commits (repo, created DESC, id);
CREATE TABLE IF NOT EXISTS intents (
    repo TEXT NOT NULL, id TEXT NOT NULL, branch TEXT NOT NULL, parent TEXT,
    created TEXT NOT NULL, message TEXT NOT NULL, origin TEXT NOT NULL, mount_id TEXT,
    holders TEXT NOT NULL DEFAULT '[]', lineage TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (repo, id));
CREATE TABLE IF NOT EXISTS mounts (
    id TEXT PRIMARY KEY, volume TEXT NOT NULL, repo TEXT NOT NULL, branch TEXT,
    commit_id TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY, repo TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deleted_repos (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (kind, name));
"""

ADDED_COLUMNS = {
    "repos": {
        "replicas": "INTEGER NOT NULL DEFAULT 1",
        "placement": "TEXT NOT NULL DEFAULT '[]'",
    },
    "branches": {"working_base": "TEXT"},
    "commits": {
        "pruned": "INTEGER NOT NULL DEFAULT 0",
        "holders": "TEXT NOT NULL DEFAULT '[]'",
        "lineage": "TEXT NOT NULL DEFAULT '{}'",
    },
    "intents": {
        "holders": "TEXT NOT NULL DEFAULT '[]'",
        "lineage": "TEXT NOT NULL DEFAULT '{}'",
    },
    "mounts": {"uses": "INTEGER NOT NULL DEFAULT 1"},
}
"""Columns added since the first release, by table: a store made before them gets them
(with these definitions) when it is opened. ``CREATE TABLE IF NOT EXISTS`` leaves an
existing table as it is, so this is how an old table learns new columns."""

REPO_COLUMNS = "name, created, description, replicas, placement"
BRANCH_COLUMNS = "repo, name, head, created, clean_generation, working_base"
COMMIT_COLUMNS = "id, repo, branch, parent, created, message, origin, pruned, holders, lineage"
LINK_COLUMNS = "id, created, parent, lineage"
"""What a page of the log reads of each commit (``links_of``)."""
INTENT_COLUMNS = "id, repo, branch, parent, created, message, origin, mount_id, holders, lineage"
MOUNT_COLUMNS = "id, volume, repo, branch, commit_id, created, uses"


VOLUME_COLUMNS = "name, repo, created"
_COMMIT_HEAD = ("id", "repo", "branch", "parent", "created", "message", "origin")
"""The commit fields that are columns of their own in ``commits`` and ``intents``."""


def add_missing_columns(db: sqlite3.Connection, node_id: str) -> None:
    """Give every table of ``ADDED_COLUMNS`` the columns it lacks, filling them in as
    an earlier version meant them (``node_id``: this host, the holder of every commit
    it made)."""
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column, definition in columns.items():
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                if (table, column) == ("commits", "holders"):
                    db.execute(
                        "UPDATE commits SET holders = ? WHERE pruned = 0",
                        (json.dumps([node_id]),),
                    )
                if (table, column) == ("intents", "holders"):
                    db.execute("UPDATE intents SET holders = ?", (json.dumps([node_id]),))
                if (table, column) == ("branches", "working_base"):
                    # Before this column a clean generation always meant "equals the
                    # head": say so, or every branch would look stale after upgrade.
                    db.execute(
                        "UPDATE branches SET working_base = head WHERE clean_generation IS NOT NULL"
                    )


# records as rows, in the order of the *_COLUMNS above


def repo_row(repo: RepoRecord) -> tuple[Any, ...]:
    """A repo as a row of ``REPO_COLUMNS``."""
    fields = repo_fields(repo, iso_time)
    fields["placement"] = json.dumps(fields["placement"])
    return tuple(fields.values())


def repo_of(row: tuple[Any, ...]) -> RepoRecord:
    """The repo of a row of ``REPO_COLUMNS``."""
    fields = dict(zip(("name", "created", "description", "replicas"), row, strict=False))
    return repo_from({**fields, "placement": json.loads(row[4])})


def branch_row(branch: BranchRecord) -> tuple[Any, ...]:
    """A branch as a row of ``BRANCH_COLUMNS``."""
    return tuple(branch_fields(branch, iso_time).values())


def branch_of(row: tuple[Any, ...]) -> BranchRecord:
    """The branch of a row of ``BRANCH_COLUMNS``."""
    keys = ("repo", "name", "head", "created", "clean_generation", "working_base")
    return branch_from(dict(zip(keys, row, strict=True)))


def commit_row(commit: CommitRecord) -> tuple[Any, ...]:
    """A commit as a row of ``COMMIT_COLUMNS``."""
    fields = commit_fields(commit, iso_time)
    return (
        *pick(fields, _COMMIT_HEAD).values(),
        int(fields["pruned"]),
        json.dumps(fields["holders"]),
        _lineage(fields),
    )


def intent_row(commit: CommitRecord, mount_id: str | None) -> tuple[Any, ...]:
    """A commit intent as a row of ``INTENT_COLUMNS``: the commit's row, with the mount
    in the place of ``pruned``."""
    row = commit_row(commit)
    return (*row[:7], mount_id, *row[8:])


def _lineage(fields: dict[str, Any]) -> str:
    """A pipeline output's provenance and job and a merge's further parents, as JSON."""
    lineage: dict[str, Any] = {}
    if fields["provenance"] or fields["job"] is not None:
        lineage.update(provenance=fields["provenance"], job=fields["job"])
    if fields["merge_parents"]:
        lineage["merge_parents"] = fields["merge_parents"]
    return json.dumps(lineage)


def commit_of(row: tuple[Any, ...]) -> CommitRecord:
    """The commit of a row of ``COMMIT_COLUMNS`` (a row of ``INTENT_COLUMNS`` with
    ``pruned`` in the mount's place reads the same)."""
    lineage = json.loads(row[9]) if len(row) > 9 else {}
    fields = dict(zip(_COMMIT_HEAD, row, strict=False))
    return commit_from(
        {
            **fields,
            "pruned": row[7],
            "holders": json.loads(row[8]),
            **{k: lineage[k] for k in ("provenance", "job", "merge_parents") if k in lineage},
        }
    )


def mount_row(mount: MountRecord) -> tuple[Any, ...]:
    """A mount as a row of ``MOUNT_COLUMNS``."""
    return tuple(mount_fields(mount, iso_time).values())


def mount_of(row: tuple[Any, ...]) -> MountRecord:
    """The mount of a row of ``MOUNT_COLUMNS``."""
    keys = ("id", "volume", "repo", "branch", "commit", "created", "uses")
    return mount_from(dict(zip(keys, row, strict=True)))


def volume_row(volume: VolumeRecord) -> tuple[Any, ...]:
    """A Docker volume name as a row of ``VOLUME_COLUMNS``."""
    return tuple(volume_fields(volume, iso_time).values())


def volume_of(row: tuple[Any, ...]) -> VolumeRecord:
    """The volume name of a row of ``VOLUME_COLUMNS``."""
    return volume_from(dict(zip(("name", "repo", "created"), row, strict=True)))


def make_private_store(path: Path) -> None:
    """Create the database file (and fix an older one and its WAL files) with mode 0600:
    SQLite gives its WAL and shared-memory files the database file's mode.

    Raises:
        StorageError: when the file cannot be made or is a symbolic link.
    """
    try:
        os.close(create_private_file(path))
    except OSError as exc:
        raise StorageError(f"cannot make the metadata store {path} private: {exc}") from exc
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists() and not extra.is_symlink():
            make_private(extra, PRIVATE_FILE)


def links_of(row: tuple[Any, ...]) -> CommitLinks:
    """A commit's place in the graph from a row of ``LINK_COLUMNS``."""
    commit_id, created, parent, lineage = row
    merged = tuple(json.loads(lineage).get("merge_parents", ()))
    return CommitLinks(commit_id, parse_time(created), (parent, *merged) if parent else ())
