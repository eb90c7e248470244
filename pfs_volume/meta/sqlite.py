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
import socket
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pfs_volume.errors import StorageError
from pfs_volume.failpoints import failpoint
from pfs_volume.meta import errors
from pfs_volume.meta.change_log import ChangeLog, StoreChanges
from pfs_volume.meta.codec import iso_time
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitLinks,
    CommitRecord,
    Fence,
    RepoRecord,
)
from pfs_volume.meta.sqlite_changes import track_changes
from pfs_volume.meta.sqlite_layout import (
    BRANCH_COLUMNS,
    COMMIT_COLUMNS,
    INTENT_COLUMNS,
    LINK_COLUMNS,
    REPO_COLUMNS,
    SCHEMA,
    add_missing_columns,
    branch_of,
    branch_row,
    commit_of,
    commit_row,
    intent_row,
    links_of,
    make_private_store,
    repo_of,
    repo_row,
)
from pfs_volume.meta.sqlite_local import SqliteNodeRecords
from pfs_volume.meta.sqlite_sizes import (
    SIZES_SCHEMA,
    SqliteSizes,
    count_one_more,
    drop_sizes,
    start_total,
    take_out_pruned,
)
from pfs_volume.meta.store import MetadataStore

BATCH = 500
"""Ids per query of ``get_commits`` (SQLite allows 999 parameters in older builds)."""

BUSY_TIMEOUT = 30.0


class SqliteStore(SqliteNodeRecords, SqliteSizes, MetadataStore):
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
        make_private_store(path)
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
            self._db.executescript(SIZES_SCHEMA)
            add_missing_columns(self._db, self._node_id)
            self._log = ChangeLog()
            track_changes(self._db, self._log)
        except sqlite3.Error as exc:
            if hasattr(self, "_db"):  # a failed start keeps this frame: the pool stayed busy
                self._db.close()
            raise StorageError(f"cannot open the metadata store {path}: {exc}") from exc

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
            start_total(db, repo.name)

    def import_repo(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        with self._write() as db:
            self._insert_repo(db, repo)
            db.executemany(
                f"INSERT INTO commits ({COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [commit_row(_in_repo(c, repo.name)) for c in commits],
            )
            for branch in branches:
                self._insert_branch(db, branch)
            start_total(db, repo.name, sum(c.pruned for c in commits), len(commits))

    def get_repo(self, name: str) -> RepoRecord | None:
        rows = self._read(f"SELECT {REPO_COLUMNS} FROM repos WHERE name=?", (name,))
        return repo_of(rows[0]) if rows else None

    def list_repos(self) -> list[RepoRecord]:
        rows = self._read(f"SELECT {REPO_COLUMNS} FROM repos ORDER BY name")
        return [repo_of(row) for row in rows]

    def delete_repo(self, name: str) -> None:
        with self._write() as db:
            for table in ("branches", "commits", "intents", "mounts", "volumes"):
                db.execute(f"DELETE FROM {table} WHERE repo=?", (name,))
            drop_sizes(db, name)
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
                raise errors.branch_exists(branch.repo, branch.name)
            if not db.execute("SELECT 1 FROM repos WHERE name=?", (branch.repo,)).fetchone():
                raise errors.no_repo(branch.repo)
            self._insert_branch(db, branch)

    @staticmethod
    def _insert_repo(db: sqlite3.Connection, repo: RepoRecord) -> None:
        if db.execute("SELECT 1 FROM repos WHERE name=?", (repo.name,)).fetchone():
            raise errors.repo_exists(repo.name)
        if db.execute("SELECT 1 FROM deleted_repos WHERE name=?", (repo.name,)).fetchone():
            raise errors.repo_being_deleted(repo.name)
        db.execute(f"INSERT INTO repos ({REPO_COLUMNS}) VALUES (?,?,?,?,?)", repo_row(repo))

    @staticmethod
    def _insert_branch(db: sqlite3.Connection, branch: BranchRecord) -> None:
        db.execute(
            f"INSERT INTO branches ({BRANCH_COLUMNS}) VALUES (?,?,?,?,?,?)", branch_row(branch)
        )

    def get_branch(self, repo: str, name: str) -> BranchRecord | None:
        rows = self._read(
            f"SELECT {BRANCH_COLUMNS} FROM branches WHERE repo=? AND name=?", (repo, name)
        )
        return branch_of(rows[0]) if rows else None

    def get_repo_branch(
        self, repo: str, name: str
    ) -> tuple[RepoRecord | None, BranchRecord | None]:
        with self._lock:  # one snapshot of both
            return self.get_repo(repo), self.get_branch(repo, name)

    def list_branches(self, repo: str) -> list[BranchRecord]:
        rows = self._read(
            f"SELECT {BRANCH_COLUMNS} FROM branches WHERE repo=? ORDER BY name", (repo,)
        )
        return [branch_of(row) for row in rows]

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
                raise errors.no_branch(repo, branch)

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        with self._write() as db:
            row = db.execute("SELECT placement FROM repos WHERE name=?", (repo,)).fetchone()
            if row is None:
                raise errors.no_repo(repo)
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
                raise errors.no_commit(repo, commit_id)
            holders = json.dumps(sorted(change(set(json.loads(row[0])))))
            db.execute(
                "UPDATE commits SET holders=? WHERE repo=? AND id=?", (holders, repo, commit_id)
            )

    # commits

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        rows = self._read(
            f"SELECT {COMMIT_COLUMNS} FROM commits WHERE repo=? AND id=?", (repo, commit_id)
        )
        return commit_of(rows[0]) if rows else None

    def get_commits(self, repo: str, commit_ids: list[str]) -> list[CommitRecord | None]:
        found: dict[str, CommitRecord] = {}
        for start in range(0, len(commit_ids), BATCH):
            chunk = commit_ids[start : start + BATCH]
            rows = self._read(
                f"SELECT {COMMIT_COLUMNS} FROM commits WHERE repo=? AND id IN "
                f"({','.join('?' * len(chunk))})",
                (repo, *chunk),
            )
            found.update((row[0], commit_of(row)) for row in rows)
        return [found.get(commit_id) for commit_id in commit_ids]

    def commit_links(self, repo: str, after: tuple[datetime, str], limit: int) -> list[CommitLinks]:
        # The order of ``list_commits``: the stored time's text, then the id; two
        # queries, each a walk of the ``commits_in_log_order`` index.
        created, commit_id = iso_time(after[0]), after[1]
        same = self._read(
            f"SELECT {LINK_COLUMNS} FROM commits WHERE repo=? AND created=? AND id>? "
            "ORDER BY id LIMIT ?",
            (repo, created, commit_id, max(limit, 0)),
        )
        older = self._read(
            f"SELECT {LINK_COLUMNS} FROM commits WHERE repo=? AND created<? "
            "ORDER BY created DESC, id LIMIT ?",
            (repo, created, max(limit - len(same), 0)),
        )
        return [links_of(row) for row in same + older]

    def list_commits(self, repo: str) -> list[CommitRecord]:
        rows = self._read(
            f"SELECT {COMMIT_COLUMNS} FROM commits WHERE repo=? ORDER BY created DESC, id",
            (repo,),
        )
        return [commit_of(row) for row in rows]

    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        with self._write() as db:
            for commit_id in dict.fromkeys(commit_ids):
                take_out_pruned(db, repo, commit_id)
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
        """From the repo's total, or for a repo made before totals were kept by counting
        its records."""
        rows = self._read("SELECT commits FROM repo_sizes WHERE repo=?", (repo,))
        if rows:
            return int(rows[0][0])
        return int(self._read("SELECT count(*) FROM commits WHERE repo=?", (repo,))[0][0])

    def begin_commit(self, intent: CommitIntent) -> None:
        c = intent.commit
        with self._write() as db:
            db.execute(
                f"INSERT INTO intents ({INTENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                intent_row(c, intent.mount_id),
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
                f"INSERT INTO commits ({COMMIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                commit_row(c),
            )
            count_one_more(db, c.repo)
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
        rows = self._read(f"SELECT {INTENT_COLUMNS} FROM intents ORDER BY created, id")
        return [
            CommitIntent(commit_of((*row[:7], 0, row[8], row[9])), mount_id=row[7]) for row in rows
        ]

    def change_token(self) -> int:
        """The rows this connection changed since it opened: it grows with every write,
        and the database is written by no other connection (``locking_mode=EXCLUSIVE``).
        Taken under the lock that a write transaction holds to its end."""
        with self._lock:
            return self._db.total_changes

    def changed_since(self, cursor: Hashable | None) -> StoreChanges:
        """From the rows each write changed (``sqlite_changes``), under the write lock."""
        with self._lock:
            return self._log.changes(cursor)

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
        raise errors.no_branch(repo, branch)
    if row[0] != expected:
        raise errors.head_moved(repo, branch, row[0], expected)


def _in_repo(commit: CommitRecord, repo: str) -> CommitRecord:
    """The commit as a record of ``repo`` (an import may rename the repo)."""
    return commit if commit.repo == repo else dataclasses.replace(commit, repo=repo)
