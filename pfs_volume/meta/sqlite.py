"""The embedded MetadataStore: one SQLite file, for a single host with no server.

One connection shared by the daemon's threads behind a lock; write-ahead logging with
``synchronous=FULL`` so that a transaction that returned survives a crash of the process
or the machine.

Fences are ignored here: on one host there is no cluster-wide lock to lose, and the local
branch lock of ``RepoService`` is the only writer of a branch head; the compare-and-swap
on the head still guards against any other path moving it. Working copy state
(``clean_generation``, ``working_base``) sits in the branch row, as there is one node.
Databases made by earlier versions get the columns they lack when opened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pfs_volume.errors import Conflict, NotFound, StorageError
from pfs_volume.failpoints import failpoint
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    Fence,
    MountRecord,
    RepoRecord,
    VolumeRecord,
)
from pfs_volume.meta.store import MetadataStore
from pfs_volume.private_files import PRIVATE_FILE, create_private_file, make_private

BUSY_TIMEOUT = 30.0

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

_REPO_COLUMNS = "name, created, description, replicas, placement"
_BRANCH_COLUMNS = "repo, name, head, created, clean_generation, working_base"
_COMMIT_COLUMNS = "id, repo, branch, parent, created, message, origin, pruned, holders, lineage"
_INTENT_COLUMNS = "id, repo, branch, parent, created, message, origin, mount_id, holders, lineage"
_MOUNT_COLUMNS = "id, volume, repo, branch, commit_id, created, uses"


class SqliteStore(MetadataStore):
    """MetadataStore in a SQLite database file.

    Args:
        path: the database file; created with its schema when missing, brought up to the
            current schema when made by an earlier version.
        node_id: this host's node id: a store made before commits listed their holders
            gets it as the holder of every commit whose data was not pruned (SQLite serves
            a single host, which made them all; a copy counts only when it is listed).
    Raises:
        StorageError: the file cannot be opened or is not a pfs store.
    """

    def __init__(self, path: Path, node_id: str | None = None) -> None:
        self.path = path
        self._node_id = node_id or socket.gethostname()
        self._lock = threading.RLock()
        _make_private(path)
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            # Before WAL is first used: the WAL index then lives in this process's memory,
            # not in a -shm file mapped into memory. On a full btrfs pool a write to a
            # mapped page finds no space for its copy and the kernel kills the daemon
            # with SIGBUS (measured at BEGIN IMMEDIATE); a write() fails with ENOSPC.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the metadata store {path}: {exc}") from exc

    def _add_missing_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, definition in columns.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    if (table, column) == ("commits", "holders"):
                        self._db.execute(
                            "UPDATE commits SET holders = ? WHERE pruned = 0",
                            (json.dumps([self._node_id]),),
                        )
                    if (table, column) == ("intents", "holders"):
                        self._db.execute(
                            "UPDATE intents SET holders = ?", (json.dumps([self._node_id]),)
                        )
                    if (table, column) == ("branches", "working_base"):
                        # Before this column a clean generation always meant "equals the
                        # head": say so, or every branch would look stale after upgrade.
                        self._db.execute(
                            "UPDATE branches SET working_base = head "
                            "WHERE clean_generation IS NOT NULL"
                        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"metadata store {self.path}: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"metadata store {self.path}: {exc}") from exc

    # repos

    def create_repo(self, repo: RepoRecord, default_branch: BranchRecord) -> None:
        with self._write() as db:
            self._insert_repo(db, repo)
            self._insert_branch(db, default_branch)

    def import_repo(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        with self._write() as db:
            self._insert_repo(db, repo)
            db.executemany(
                f"INSERT INTO commits ({_COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [_commit_row(_in_repo(c, repo.name)) for c in commits],
            )
            for branch in branches:
                self._insert_branch(db, branch)

    def get_repo(self, name: str) -> RepoRecord | None:
        rows = self._read(f"SELECT {_REPO_COLUMNS} FROM repos WHERE name=?", (name,))
        return _repo(rows[0]) if rows else None

    def list_repos(self) -> list[RepoRecord]:
        rows = self._read(f"SELECT {_REPO_COLUMNS} FROM repos ORDER BY name")
        return [_repo(row) for row in rows]

    def delete_repo(self, name: str) -> None:
        with self._write() as db:
            for table in ("branches", "commits", "intents", "mounts", "volumes"):
                db.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
            db.execute("DELETE FROM repos WHERE name=?", (name,))
            db.execute("INSERT OR IGNORE INTO deleted_repos VALUES (?)", (name,))

    def list_deleted_repos(self) -> list[str]:
        return [row[0] for row in self._read("SELECT name FROM deleted_repos ORDER BY name")]

    def repo_deleted(self, name: str) -> bool:
        return name in self.list_deleted_repos() and self.get_repo(name) is None

    def forget_deleted_repo(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM deleted_repos WHERE name=?", (name,))

    # branches

    def create_branch(self, branch: BranchRecord) -> None:
        with self._write() as db:
            exists = db.execute(
                "SELECT 1 FROM branches WHERE repo=? AND name=?", (branch.repo, branch.name)
            ).fetchone()
            if exists:
                raise Conflict(f"branch {branch.repo}/{branch.name} exists already")
            if not db.execute("SELECT 1 FROM repos WHERE name=?", (branch.repo,)).fetchone():
                raise NotFound(f"there is no repo {branch.repo!r}")
            self._insert_branch(db, branch)

    @staticmethod
    def _insert_repo(db: sqlite3.Connection, repo: RepoRecord) -> None:
        if db.execute("SELECT 1 FROM repos WHERE name=?", (repo.name,)).fetchone():
            raise Conflict(f"repo {repo.name!r} exists already")
        if db.execute("SELECT 1 FROM deleted_repos WHERE name=?", (repo.name,)).fetchone():
            raise Conflict(f"repo {repo.name!r} is still being deleted")
        db.execute(
            f"INSERT INTO repos ({_REPO_COLUMNS}) VALUES (?,?,?,?,?)",
            (
                repo.name,
                repo.created.isoformat(),
                repo.description,
                repo.replicas,
                json.dumps(list(repo.placement)),
            ),
        )

    @staticmethod
    def _insert_branch(db: sqlite3.Connection, branch: BranchRecord) -> None:
        db.execute(
            f"INSERT INTO branches ({_BRANCH_COLUMNS}) VALUES (?,?,?,?,?,?)",
            (
                branch.repo,
                branch.name,
                branch.head,
                branch.created.isoformat(),
                branch.clean_generation,
                branch.working_base,
            ),
        )

    def get_branch(self, repo: str, name: str) -> BranchRecord | None:
        rows = self._read(
            f"SELECT {_BRANCH_COLUMNS} FROM branches WHERE repo=? AND name=?", (repo, name)
        )
        return _branch(rows[0]) if rows else None

    def list_branches(self, repo: str) -> list[BranchRecord]:
        rows = self._read(
            f"SELECT {_BRANCH_COLUMNS} FROM branches WHERE repo=? ORDER BY name", (repo,)
        )
        return [_branch(row) for row in rows]

    def delete_branch(self, repo: str, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM branches WHERE repo=? AND name=?", (repo, name))

    def move_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None = None,
    ) -> None:
        """Compare-and-swap the head; ``fence`` is ignored (see the module docstring)."""
        with self._write() as db:
            _check_head(db, repo, branch, expected)
            db.execute(
                "UPDATE branches SET head=?, clean_generation=NULL, working_base=NULL "
                "WHERE repo=? AND name=?",
                (new, repo, branch),
            )

    def set_clean_generation(
        self, repo: str, branch: str, generation: int, base: str | None
    ) -> None:
        with self._write() as db:
            updated = db.execute(
                "UPDATE branches SET clean_generation=?, working_base=? WHERE repo=? AND name=?",
                (generation, base, repo, branch),
            ).rowcount
            if not updated:
                raise NotFound(f"repo {repo!r} has no branch {branch!r}")

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        with self._write() as db:
            row = db.execute("SELECT placement FROM repos WHERE name=?", (repo,)).fetchone()
            if row is None:
                raise NotFound(f"there is no repo {repo!r}")
            if tuple(json.loads(row[0])) != tuple(expected):
                return False
            db.execute("UPDATE repos SET placement=? WHERE name=?", (json.dumps(list(new)), repo))
            return True

    def add_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._change_holders(repo, commit_id, lambda held: held | {node})

    def remove_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._change_holders(repo, commit_id, lambda held: held - {node})

    def _change_holders(
        self, repo: str, commit_id: str, change: Callable[[set[str]], set[str]]
    ) -> None:
        with self._write() as db:
            row = db.execute(
                "SELECT holders FROM commits WHERE repo=? AND id=?", (repo, commit_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"repo {repo!r} has no commit {commit_id}")
            holders = json.dumps(sorted(change(set(json.loads(row[0])))))
            db.execute(
                "UPDATE commits SET holders=? WHERE repo=? AND id=?", (holders, repo, commit_id)
            )

    # commits

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        rows = self._read(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo=? AND id=?", (repo, commit_id)
        )
        return _commit(rows[0]) if rows else None

    def list_commits(self, repo: str) -> list[CommitRecord]:
        rows = self._read(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo=? ORDER BY created DESC, id",
            (repo,),
        )
        return [_commit(row) for row in rows]

    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE commits SET pruned=1 WHERE repo=? AND id=?",
                [(repo, commit_id) for commit_id in commit_ids],
            )

    def find_commit_ids(self, repo: str, prefix: str) -> list[str]:
        rows = self._read(
            "SELECT id FROM commits WHERE repo=? AND id >= ? AND id < ? ORDER BY id LIMIT 10",
            (repo, prefix, prefix + "g"),
        )
        return [row[0] for row in rows]

    def count_commits(self, repo: str) -> int:
        return int(self._read("SELECT count(*) FROM commits WHERE repo=?", (repo,))[0][0])

    def begin_commit(self, intent: CommitIntent) -> None:
        c = intent.commit
        with self._write() as db:
            db.execute(
                f"INSERT INTO intents ({_INTENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                # The commit's row, with the mount in the place of ``pruned``.
                (*_commit_row(c)[:7], intent.mount_id, *_commit_row(c)[8:]),
            )

    def finish_commit(
        self, intent: CommitIntent, generation: int, fence: Fence | None = None
    ) -> None:
        """The commit lands in one transaction; ``fence`` is ignored (see the module
        docstring)."""
        c = intent.commit
        with self._write() as db:
            _check_head(db, c.repo, c.branch, c.parent)
            db.execute(
                f"INSERT INTO commits ({_COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                _commit_row(c),
            )
            failpoint("commit.between_record_and_head")
            db.execute(
                "UPDATE branches SET head=?, clean_generation=?, working_base=? "
                "WHERE repo=? AND name=?",
                (c.id, generation, c.id, c.repo, c.branch),
            )
            db.execute("DELETE FROM intents WHERE repo=? AND id=?", (c.repo, c.id))
            if intent.mount_id is not None:
                db.execute("DELETE FROM mounts WHERE id=?", (intent.mount_id,))

    def abandon_commit(self, intent: CommitIntent) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM intents WHERE repo=? AND id=?",
                (intent.commit.repo, intent.commit.id),
            )

    def list_intents(self) -> list[CommitIntent]:
        rows = self._read(f"SELECT {_INTENT_COLUMNS} FROM intents ORDER BY created, id")
        return [
            CommitIntent(_commit((*row[:7], 0, row[8], row[9])), mount_id=row[7]) for row in rows
        ]

    # mounts

    def add_mount(self, mount: MountRecord) -> MountRecord:
        with self._write() as db:
            row = db.execute(
                f"SELECT {_MOUNT_COLUMNS} FROM mounts WHERE id=?",
                (mount.id,),
            ).fetchone()
            if row:
                return _mount(row)
            db.execute(
                f"INSERT INTO mounts ({_MOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    mount.id,
                    mount.volume,
                    mount.repo,
                    mount.branch,
                    mount.commit,
                    mount.created.isoformat(),
                    mount.uses,
                ),
            )
            return mount

    def get_mount(self, mount_id: str) -> MountRecord | None:
        rows = self._read(
            f"SELECT {_MOUNT_COLUMNS} FROM mounts WHERE id=?",
            (mount_id,),
        )
        return _mount(rows[0]) if rows else None

    def list_mounts(self, repo: str | None = None) -> list[MountRecord]:
        sql = f"SELECT {_MOUNT_COLUMNS} FROM mounts"
        rows = (
            self._read(sql + " WHERE repo=? ORDER BY created, id", (repo,))
            if repo is not None
            else self._read(sql + " ORDER BY created, id")
        )
        return [_mount(row) for row in rows]

    def delete_mount(self, mount_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM mounts WHERE id=?", (mount_id,))

    def use_mount(self, mount_id: str) -> MountRecord | None:
        with self._write() as db:
            db.execute("UPDATE mounts SET uses = uses + 1 WHERE id=?", (mount_id,))
            row = db.execute(
                f"SELECT {_MOUNT_COLUMNS} FROM mounts WHERE id=?", (mount_id,)
            ).fetchone()
            return _mount(row) if row else None

    def unuse_mount(self, mount_id: str) -> bool:
        with self._write() as db:
            done = db.execute(
                "UPDATE mounts SET uses = uses - 1 WHERE id=? AND uses > 1", (mount_id,)
            )
            return done.rowcount > 0

    # Docker volume names

    def add_volume(self, volume: VolumeRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO volumes (name, repo, created) VALUES (?,?,?)",
                (volume.name, volume.repo, volume.created.isoformat()),
            )

    def get_volume(self, name: str) -> VolumeRecord | None:
        rows = self._read("SELECT name, repo, created FROM volumes WHERE name=?", (name,))
        return _volume(rows[0]) if rows else None

    def list_volumes(self) -> list[VolumeRecord]:
        rows = self._read("SELECT name, repo, created FROM volumes ORDER BY name")
        return [_volume(row) for row in rows]

    def delete_volume(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM volumes WHERE name=?", (name,))

    # documents

    def put_document(self, kind: str, name: str, body: str, expected: int | None) -> int:
        with self._write() as db:
            row = db.execute(
                "SELECT version FROM documents WHERE kind=? AND name=?", (kind, name)
            ).fetchone()
            found = None if row is None else int(row[0])
            if found != expected:
                if expected is None:
                    raise Conflict(f"{kind} {name!r} exists already")
                if found is None:
                    raise Conflict(f"there is no {kind} {name!r} (it was deleted)")
                raise Conflict(f"{kind} {name!r} is at version {found}, not {expected}")
            version = (found or 0) + 1
            db.execute(
                "INSERT OR REPLACE INTO documents (kind, name, body, version) VALUES (?,?,?,?)",
                (kind, name, body, version),
            )
            return version

    def get_document(self, kind: str, name: str) -> tuple[str, int] | None:
        rows = self._read(
            "SELECT body, version FROM documents WHERE kind=? AND name=?", (kind, name)
        )
        return (rows[0][0], int(rows[0][1])) if rows else None

    def list_documents(self, kind: str) -> list[tuple[str, str, int]]:
        rows = self._read(
            "SELECT name, body, version FROM documents WHERE kind=? ORDER BY name", (kind,)
        )
        return [(row[0], row[1], int(row[2])) for row in rows]

    def delete_document(self, kind: str, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE kind=? AND name=?", (kind, name))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _check_head(db: sqlite3.Connection, repo: str, branch: str, expected: str | None) -> None:
    """Raise unless the branch exists with head ``expected`` (inside a write transaction).

    Raises:
        NotFound: no such branch. Conflict: its head is another.
    """
    row = db.execute("SELECT head FROM branches WHERE repo=? AND name=?", (repo, branch)).fetchone()
    if row is None:
        raise NotFound(f"repo {repo!r} has no branch {branch!r}")
    if row[0] != expected:
        raise Conflict(f"branch {repo}/{branch} moved: its head is {row[0]}, not {expected}")


def _in_repo(commit: CommitRecord, repo: str) -> CommitRecord:
    """The commit as a record of ``repo`` (an import may rename the repo)."""
    return commit if commit.repo == repo else dataclasses.replace(commit, repo=repo)


def _commit_row(c: CommitRecord) -> tuple[Any, ...]:
    return (
        c.id,
        c.repo,
        c.branch,
        c.parent,
        c.created.isoformat(),
        c.message,
        c.origin,
        int(c.pruned),
        json.dumps(sorted(c.holders)),
        _lineage(c),
    )


def _lineage(c: CommitRecord) -> str:
    """A pipeline output's provenance and job and a merge's further parents, as JSON
    (``{}`` for other commits; rows written before a key existed simply lack it)."""
    fields: dict[str, Any] = {}
    if c.provenance or c.job is not None:
        fields.update(provenance=list(c.provenance), job=c.job)
    if c.merge_parents:
        fields["merge_parents"] = list(c.merge_parents)
    return json.dumps(fields)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _repo(row: tuple[Any, ...]) -> RepoRecord:
    return RepoRecord(
        name=row[0],
        created=_time(row[1]),
        description=row[2],
        replicas=int(row[3]),
        placement=tuple(json.loads(row[4])),
    )


def _branch(row: tuple[Any, ...]) -> BranchRecord:
    return BranchRecord(
        repo=row[0],
        name=row[1],
        head=row[2],
        created=_time(row[3]),
        clean_generation=row[4],
        working_base=row[5],
    )


def _commit(row: tuple[Any, ...]) -> CommitRecord:
    lineage = json.loads(row[9]) if len(row) > 9 else {}
    return CommitRecord(
        id=row[0],
        repo=row[1],
        branch=row[2],
        parent=row[3],
        created=_time(row[4]),
        message=row[5],
        origin=row[6],
        pruned=bool(row[7]),
        holders=tuple(json.loads(row[8])),
        provenance=tuple(lineage.get("provenance", ())),
        job=lineage.get("job"),
        merge_parents=tuple(lineage.get("merge_parents", ())),
    )


def _mount(row: tuple[Any, ...]) -> MountRecord:
    return MountRecord(
        id=row[0],
        volume=row[1],
        repo=row[2],
        branch=row[3],
        commit=row[4],
        created=_time(row[5]),
        uses=row[6],
    )


def _volume(row: tuple[Any, ...]) -> VolumeRecord:
    return VolumeRecord(name=row[0], repo=row[1], created=_time(row[2]))


def _make_private(path: Path) -> None:
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
