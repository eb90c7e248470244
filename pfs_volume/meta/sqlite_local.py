"""The SQLite store's mounts, Docker volume names and documents (a part of
``SqliteStore``, which provides ``_write`` and ``_read``)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from pfs_volume.meta import errors
from pfs_volume.meta.records import MountRecord, VolumeRecord
from pfs_volume.meta.sqlite_layout import (
    MOUNT_COLUMNS,
    VOLUME_COLUMNS,
    mount_of,
    mount_row,
    volume_of,
    volume_row,
)


class SqliteNodeRecords:
    """Mount records, volume names and versioned documents in SQLite."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    # mounts

    def add_mount(self, mount: MountRecord) -> MountRecord:
        with self._write() as db:
            row = db.execute(
                f"SELECT {MOUNT_COLUMNS} FROM mounts WHERE id=?",
                (mount.id,),
            ).fetchone()
            if row:
                return mount_of(row)
            db.execute(
                f"INSERT INTO mounts ({MOUNT_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                mount_row(mount),
            )
            return mount

    def get_mount(self, mount_id: str) -> MountRecord | None:
        rows = self._read(
            f"SELECT {MOUNT_COLUMNS} FROM mounts WHERE id=?",
            (mount_id,),
        )
        return mount_of(rows[0]) if rows else None

    def list_mounts(self, repo: str | None = None) -> list[MountRecord]:
        sql = f"SELECT {MOUNT_COLUMNS} FROM mounts"
        rows = (
            self._read(sql + " WHERE repo=? ORDER BY created, id", (repo,))
            if repo is not None
            else self._read(sql + " ORDER BY created, id")
        )
        return [mount_of(row) for row in rows]

    def delete_mount(self, mount_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM mounts WHERE id=?", (mount_id,))

    def use_mount(self, mount_id: str) -> MountRecord | None:
        with self._write() as db:
            db.execute("UPDATE mounts SET uses = uses + 1 WHERE id=?", (mount_id,))
            row = db.execute(
                f"SELECT {MOUNT_COLUMNS} FROM mounts WHERE id=?", (mount_id,)
            ).fetchone()
            return mount_of(row) if row else None

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
                f"INSERT OR IGNORE INTO volumes ({VOLUME_COLUMNS}) VALUES (?,?,?)",
                volume_row(volume),
            )

    def get_volume(self, name: str) -> VolumeRecord | None:
        rows = self._read(f"SELECT {VOLUME_COLUMNS} FROM volumes WHERE name=?", (name,))
        return volume_of(rows[0]) if rows else None

    def list_volumes(self) -> list[VolumeRecord]:
        rows = self._read(f"SELECT {VOLUME_COLUMNS} FROM volumes ORDER BY name")
        return [volume_of(row) for row in rows]

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
                raise errors.document_moved(kind, name, found, expected)
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
