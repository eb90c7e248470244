"""A branch's last commit error: kept in memory when the store cannot take it (a full
pool), persisted when it can, read back after a restart, cleared by the next commit.
The store is a tiny fake of the four document calls (pure bookkeeping)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from pfs_volume.commit_errors import CommitErrors
from pfs_volume.errors import StorageError
from pfs_volume.meta import MetadataStore

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


class Documents:
    """The document calls of a MetadataStore, in a dict; ``full`` makes writes fail."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], tuple[str, int]] = {}
        self.full = False

    def _check(self) -> None:
        if self.full:
            raise StorageError("metadata store meta.db: database or disk is full")

    def get_document(self, kind: str, name: str) -> tuple[str, int] | None:
        return self.docs.get((kind, name))

    def put_document(self, kind: str, name: str, body: str, expected: int | None) -> int:
        self._check()
        found = self.docs.get((kind, name))
        assert (found[1] if found else None) == expected
        self.docs[(kind, name)] = (body, (expected or 0) + 1)
        return (expected or 0) + 1

    def list_documents(self, kind: str) -> list[tuple[str, str, int]]:
        return [(n, b, v) for (k, n), (b, v) in sorted(self.docs.items()) if k == kind]

    def delete_document(self, kind: str, name: str) -> None:
        self._check()
        self.docs.pop((kind, name), None)


def errors_over(store: Documents) -> CommitErrors:
    return CommitErrors(cast(MetadataStore, store), lambda: T0)


def test_an_error_the_store_cannot_take_is_kept_in_memory() -> None:
    store = Documents()
    store.full = True
    errors = errors_over(store)
    errors.record("photos", "master", "the pool is full", "m1")
    assert store.docs == {}
    got = errors.of_branch("photos", "master")
    assert got is not None and got.as_json() == {
        "at": "2026-12-01T06:00:00.000000Z",
        "message": "the pool is full",
        "mount": "m1",
    }
    assert errors.of_repo("other") == {}


def test_a_stored_error_survives_a_restart_and_the_next_commit_clears_it() -> None:
    store = Documents()
    errors_over(store).record("photos", "master", "the pool is full", "m1")
    errors_over(store).record("photos", "master", "full again", "m2")  # replaces it
    restarted = errors_over(store)
    got: Any = restarted.of_branch("photos", "master")
    assert (got.message, got.mount_id, got.at) == ("full again", "m2", T0)
    restarted.clear("photos", "master")
    assert restarted.of_repo("photos") == {} and store.docs == {}
    restarted.clear("photos", "master")  # nothing to clear: no error
