"""The SQLite store's sizes: what each commit wrote (``commit_sizes``) and each repo's
running total (``repo_sizes``: the bytes of its measured kept commits; ``settled``, how
many of its commits are measured or pruned, so that the unmeasured ones are the commit
count less it; and ``commits``, the count, so that no query counts the history).
Functions on a connection inside the caller's transaction, and the store's size methods
(``SqliteSizes``)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from pfs_volume.meta.records import RepoSize

SIZES_SCHEMA = """
CREATE TABLE IF NOT EXISTS commit_sizes (
    repo TEXT NOT NULL, id TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (repo, id));
CREATE TABLE IF NOT EXISTS repo_sizes (
    repo TEXT PRIMARY KEY, bytes INTEGER NOT NULL, settled INTEGER NOT NULL,
    commits INTEGER NOT NULL);
"""


def start_total(db: sqlite3.Connection, repo: str, settled: int = 0, commits: int = 0) -> None:
    """A new repo's total: nothing measured, ``settled`` of its ``commits`` pruned."""
    db.execute("INSERT OR REPLACE INTO repo_sizes VALUES (?, 0, ?, ?)", (repo, settled, commits))


def count_one_more(db: sqlite3.Connection, repo: str) -> None:
    """A commit record was written (with it, in its transaction)."""
    db.execute("UPDATE repo_sizes SET commits = commits + 1 WHERE repo=?", (repo,))


def record_size(db: sqlite3.Connection, repo: str, commit_id: str, size: int) -> bool:
    """As ``MetadataStore.record_commit_size``."""
    row = db.execute("SELECT pruned FROM commits WHERE repo=? AND id=?", (repo, commit_id))
    found = row.fetchone()
    if found is None or found[0]:
        return False
    inserted = db.execute(
        "INSERT OR IGNORE INTO commit_sizes VALUES (?, ?, ?)", (repo, commit_id, size)
    )
    if inserted.rowcount == 0:
        return False
    db.execute(
        "UPDATE repo_sizes SET bytes = bytes + ?, settled = settled + 1 WHERE repo=?",
        (size, repo),
    )
    return True


def take_out_pruned(db: sqlite3.Connection, repo: str, commit_id: str) -> None:
    """Before a commit is marked pruned: take it out of the total (once)."""
    row = db.execute("SELECT pruned FROM commits WHERE repo=? AND id=?", (repo, commit_id))
    found = row.fetchone()
    if found is None or found[0]:
        return
    size = db.execute(
        "SELECT bytes FROM commit_sizes WHERE repo=? AND id=?", (repo, commit_id)
    ).fetchone()
    if size is None:
        db.execute("UPDATE repo_sizes SET settled = settled + 1 WHERE repo=?", (repo,))
    else:
        db.execute("UPDATE repo_sizes SET bytes = bytes - ? WHERE repo=?", (size[0], repo))


def drop_sizes(db: sqlite3.Connection, repo: str) -> None:
    """A deleted repo's sizes."""
    db.execute("DELETE FROM commit_sizes WHERE repo=?", (repo,))
    db.execute("DELETE FROM repo_sizes WHERE repo=?", (repo,))


class SqliteSizes:
    """The SQLite store's size methods (a part of ``SqliteStore``, which provides
    ``_write`` and ``_read``)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def record_commit_size(self, repo: str, commit_id: str, size: int) -> bool:
        with self._write() as db:
            return record_size(db, repo, commit_id, size)

    def commit_size(self, repo: str, commit_id: str) -> int | None:
        rows = self._read("SELECT bytes FROM commit_sizes WHERE repo=? AND id=?", (repo, commit_id))
        return int(rows[0][0]) if rows else None

    def commit_sizes(self, repo: str) -> dict[str, int]:
        rows = self._read("SELECT id, bytes FROM commit_sizes WHERE repo=?", (repo,))
        return {str(commit_id): int(size) for commit_id, size in rows}

    def repo_size(self, repo: str) -> RepoSize | None:
        rows = self._read("SELECT bytes, commits - settled FROM repo_sizes WHERE repo=?", (repo,))
        return RepoSize(int(rows[0][0]), int(rows[0][1])) if rows else None
