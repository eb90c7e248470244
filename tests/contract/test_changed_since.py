"""``MetadataStore.changed_since``: every kind of write names the repo it touched (or says
"anything"), and the volume names when it changed them, on SQLite (triggers,
``meta/sqlite_changes.py``) and on etcd (the watch, ``meta/etcd_changes.py``), by this
node or another. List works out again only the volumes of the repos named
(``volumes/kept_listing.py``), so a write that named too little would leave List stale."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import pytest

from pfs_volume.meta import EtcdClient, EtcdStore, MetadataStore, SqliteStore, VolumeRecord
from pfs_volume.meta.etcd_changes import EtcdChanges
from tests.contract.test_change_token import WRITES, _ready
from tests.contract.test_metadata_store import T0, cid

TOUCHES: dict[str, set[str]] = {
    "create_repo": {"other"},
    "import_repo": {"imported"},
    "forget_deleted_repo": {"gone"},
    "add_volume": {"volume photos/dev"},
    "delete_volume": {"volume photos"},
    "delete_repo": {"photos", "volume photos/dev"},
    "create_branch": {"photos branch dev"},
    "delete_branch": {"photos branch old"},
    "move_head": {"photos branch master"},
    "set_clean_generation": {"photos branch master"},
    "add_holder": {f"photos commit {cid(1)}"},
    "remove_holder": {f"photos commit {cid(2)}"},
    "mark_pruned": {f"photos commit {cid(2)}"},
    "finish_commit": {f"photos commit {cid(3)}", "photos branch master"},
}
"""What each write must name (any other names repo ``photos``): a repo as a whole, "R
KIND NAME" a part of repo R (``Part``; the repo as a whole names it too), "volume N" the
volume name N. Writes List never reads (mounts, documents, commit intents) need name
nothing."""
UNREAD = {"add_mount", "use_mount", "unuse_mount", "delete_mount", "put_document"}
UNREAD |= {"delete_document", "begin_commit", "abandon_commit"}


def named(store: MetadataStore, cursor: object) -> tuple[object, set[str] | None]:
    """(the cursor of now, what changed since ``cursor``: repos, "R KIND NAME" for each
    part (``Part``), and "volume N" for each volume name, or None for anything)."""
    found = store.changed_since(cursor)
    if found.repos is None or found.volumes is None:
        return found.cursor, None
    parts = {" ".join(part) for part in found.parts}
    return found.cursor, set(found.repos) | parts | {f"volume {n}" for n in found.volumes}


def covers(found: set[str] | None, expected: set[str]) -> bool:
    """True when ``found`` (``named``) names all of ``expected`` (``TOUCHES``)."""
    return found is not None and all(
        name in found or name.partition(" ")[0] in found for name in expected
    )


@pytest.fixture
def watched(
    backend: str, make_store: Callable[[str], MetadataStore], request: pytest.FixtureRequest
) -> Iterator[Callable[[str], MetadataStore]]:
    """Opens stores of this backend; on etcd each with a change watch as the daemon has."""
    stopped: list[EtcdChanges] = []

    def make(node_id: str) -> MetadataStore:
        if backend != "etcd":
            return make_store(node_id)
        client: EtcdClient = request.getfixturevalue("etcd_client")
        prefix: str = request.getfixturevalue("etcd_prefix")
        changes = EtcdChanges(client, prefix, node_id)
        stopped.append(changes)
        return EtcdStore(client, node_id, prefix, changed_since=changes.since)

    yield make
    for changes in stopped:
        changes.stop()


def test_every_write_names_what_it_touched(watched: Callable[[str], MetadataStore]) -> None:
    store = watched("node-a")
    _ready(store)
    cursor, _ = named(store, None)
    assert named(store, cursor)[1] == set(), "nothing written: nothing changed"
    wrong = []
    for kind, write in WRITES:
        write(store)
        cursor_after, found = named(store, cursor)
        expected = TOUCHES.get(kind, {"photos"}) if kind not in UNREAD else set()
        if not covers(found, expected):
            wrong.append(f"{kind} named {found}, not {expected}")
        cursor = cursor_after
    assert wrong == []


@pytest.mark.backend("etcd", reason="only a cluster has other nodes writing")
def test_another_nodes_writes_name_their_repo(watched: Callable[[str], MetadataStore]) -> None:
    here, there = watched("node-a"), watched("node-b")
    _ready(there)
    cursor, _ = named(here, None)
    wrong = []
    for kind, write in WRITES:
        write(there)
        cursor_after, found = named(here, cursor)
        local = kind in ("set_clean_generation", "begin_commit", "abandon_commit")
        local = local or kind in ("forget_deleted_repo", "add_volume", "delete_volume")
        expected = set() if kind in UNREAD or local else TOUCHES.get(kind, {"photos"})
        expected -= {"volume photos/dev"}  # another node's volume names are its own
        if not covers(found, expected):
            wrong.append(f"{kind} named {found}, not {expected}")
        cursor = cursor_after
    assert wrong == []


def test_an_old_or_foreign_cursor_means_anything(
    watched: Callable[[str], MetadataStore],
) -> None:
    store = watched("node-a")
    _ready(store)
    assert named(store, None)[1] is None
    assert named(store, ("another store's", 3))[1] is None


@pytest.mark.backend("sqlite", reason="SQLite's triggers are chosen by table")
def test_a_table_not_known_means_anything(store: MetadataStore) -> None:
    assert isinstance(store, SqliteStore)
    path = store.path
    store.close()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE later (x TEXT)")
    db.commit()
    db.close()
    reopened = SqliteStore(path)
    try:
        cursor, _ = named(reopened, None)
        reopened.add_volume(VolumeRecord("photos", "photos", T0))
        assert named(reopened, cursor)[1] == {"volume photos"}
        cursor, _ = named(reopened, None)
        reopened._db.execute("INSERT INTO later VALUES ('a')")  # a write no method makes
        assert named(reopened, cursor)[1] is None
    finally:
        reopened.close()
