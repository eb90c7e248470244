"""``MetadataStore.change_token``: it moves with every kind of write, by this node or
(etcd) another, and stays put across reads. Docker's List keeps its answer while it stays
put (``pfs_volume.volumes.kept_listing``), so a write kind that left it alone would leave
List stale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from pfs_volume.meta import CommitIntent, MetadataStore, VolumeRecord
from tests.contract.test_metadata_store import (
    T0,
    branch_record,
    cid,
    commit_record,
    mount_record,
    repo_record,
    with_commit,
    with_repo,
)

Write = Callable[[MetadataStore], object]


def _finish(store: MetadataStore) -> None:
    intent = CommitIntent(commit_record(3, parent=cid(2)), mount_id="m2")  # after move_head
    store.begin_commit(intent)
    store.finish_commit(intent, generation=7)


WRITES: list[tuple[str, Write]] = [
    ("create_repo", lambda s: s.create_repo(repo_record("other"), branch_record("other"))),
    (
        "import_repo",
        lambda s: s.import_repo(
            repo_record("imported"),
            [branch_record("imported", head=cid(9))],
            [replace(commit_record(9), repo="imported")],
        ),
    ),
    ("create_branch", lambda s: s.create_branch(branch_record(name="dev"))),
    ("delete_branch", lambda s: s.delete_branch("photos", "old")),
    ("move_head", lambda s: s.move_head("photos", "master", cid(1), cid(2))),
    ("set_clean_generation", lambda s: s.set_clean_generation("photos", "master", 5, cid(1))),
    ("set_placement", lambda s: s.set_placement("photos", (), ("node-a",))),
    ("add_holder", lambda s: s.add_holder("photos", cid(1), "node-b")),
    ("remove_holder", lambda s: s.remove_holder("photos", cid(2), "node-a")),
    ("mark_pruned", lambda s: s.mark_pruned("photos", [cid(2)])),
    ("add_mount", lambda s: s.add_mount(mount_record("m2"))),
    ("use_mount", lambda s: s.use_mount("m1")),
    ("unuse_mount", lambda s: s.unuse_mount("m9")),
    ("delete_mount", lambda s: s.delete_mount("m1")),
    ("begin_commit", lambda s: s.begin_commit(CommitIntent(commit_record(4, parent=cid(1))))),
    ("finish_commit", _finish),
    ("abandon_commit", lambda s: s.abandon_commit(CommitIntent(commit_record(5)))),
    ("add_volume", lambda s: s.add_volume(VolumeRecord("photos/dev", "photos", T0))),
    ("delete_volume", lambda s: s.delete_volume("photos")),
    ("put_document", lambda s: s.put_document("pipeline", "p", "{}", None)),
    ("delete_document", lambda s: s.delete_document("pipeline", "q")),
    ("delete_repo", lambda s: s.delete_repo("photos")),
    ("forget_deleted_repo", lambda s: s.forget_deleted_repo("gone")),
]


def _ready(store: MetadataStore) -> None:
    """Records for every write of ``WRITES`` to change something."""
    with_repo(store)
    with_repo(store, "gone")
    store.delete_repo("gone")
    store.create_branch(branch_record(name="old"))
    with_commit(store, 1)
    store.create_branch(branch_record(name="side", head=cid(1)))
    intent = CommitIntent(commit_record(2, parent=cid(1), holders=("node-a",)))
    store.begin_commit(intent)
    store.finish_commit(intent, generation=6)  # master at 2
    store.move_head("photos", "master", cid(2), cid(1))
    store.begin_commit(CommitIntent(commit_record(5)))
    store.add_mount(mount_record("m1"))
    store.add_mount(mount_record("m9"))
    store.use_mount("m9")
    store.add_volume(VolumeRecord("photos", "photos", T0))
    store.put_document("pipeline", "q", "{}", None)


def test_every_kind_of_write_moves_the_token(store: MetadataStore) -> None:
    """One after another on one store (each write finds what it changes)."""
    _ready(store)
    unmoved = []
    for kind, write in WRITES:
        before = store.change_token()
        store.list_volumes()
        store.list_repos()
        store.get_branch("photos", "master")
        assert store.change_token() == before, f"a read moved the token (before {kind})"
        write(store)
        if store.change_token() == before:
            unmoved.append(kind)
    assert unmoved == [], f"these writes left the token as it was: {unmoved}"


def test_reads_never_move_it(store: MetadataStore) -> None:
    with_repo(store)
    first = store.change_token()
    assert store.change_token() == first
    store.add_volume(VolumeRecord("photos", "photos", T0))
    second = store.change_token()
    assert second != first
    assert store.get_volume("photos") is not None
    assert store.change_token() == second


@pytest.mark.backend("etcd", reason="only a cluster has other nodes writing")
def test_another_nodes_write_moves_this_nodes_token(
    make_store: Callable[[str], MetadataStore],
) -> None:
    here, there = make_store("node-a"), make_store("node-b")
    with_repo(here)
    before = here.change_token()
    there.add_volume(VolumeRecord("photos/dev", "photos", T0))
    assert here.change_token() != before
    before = here.change_token()
    there.delete_repo("photos")
    assert here.change_token() != before
