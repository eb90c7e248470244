"""Commit sizes and each repo's running total (``record_commit_size``, ``commit_size``,
``commit_sizes``, ``repo_size``), kept by ``create_repo``, ``import_repo``, ``mark_pruned`` and
``delete_repo``, on both backends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pfs_volume.meta import CommitIntent, EtcdStore, MetadataStore, RepoSize, SqliteStore
from pfs_volume.meta import etcd_client as etcd_client_module
from pfs_volume.meta.etcd_client import MAX_TXN_OPS
from tests.contract.test_metadata_store import (
    branch_record,
    cid,
    commit_record,
    repo_record,
    with_commit,
    with_repo,
)


def test_sizes_add_up_once_per_commit(store: MetadataStore) -> None:
    with_repo(store)
    assert store.repo_size("photos") == RepoSize(0, 0)
    for n in range(1, 4):
        with_commit(store, n, cid(n - 1) if n > 1 else None)
    assert store.repo_size("photos") == RepoSize(0, 3)
    assert store.record_commit_size("photos", cid(1), 100) is True
    assert store.record_commit_size("photos", cid(2), 20) is True
    assert store.record_commit_size("photos", cid(2), 999) is False, "measured once"
    assert store.record_commit_size("photos", cid(9), 5) is False, "no such commit"
    assert store.commit_size("photos", cid(2)) == 20
    assert store.commit_size("photos", cid(3)) is None
    assert store.repo_size("photos") == RepoSize(120, 1)
    assert store.repo_size("nothing") is None


def test_commit_sizes_reads_every_size_of_a_repo_at_once(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = [commit_record(n) for n in range(20)] + [commit_record(20, pruned=True)]
    store.import_repo(repo_record(), [branch_record()], commits)
    with_repo(store, "photos2")  # a name the first one is a prefix of
    store.import_repo(
        repo_record("photo"), [branch_record("photo")], [commit_record(1, repo="photo")]
    )
    store.record_commit_size("photo", cid(1), 555)
    assert store.commit_sizes("photos") == {}
    measured = {cid(n): n * 10 for n in range(0, 20) if n % 4 != 3}
    for commit_id, size in measured.items():
        assert store.record_commit_size("photos", commit_id, size)
    store.record_commit_size("photos", cid(20), 7)  # pruned: not recorded
    store.mark_pruned("photos", [cid(0)])  # its size stays recorded
    posts: list[str] = []
    if isinstance(store, EtcdStore):
        # Pages of 8: the read of 15 sizes takes a few range reads, not one per commit.
        monkeypatch.setattr(etcd_client_module, "PAGE_SIZE", 8)
        post = store.client._post

        def counted(path: str, payload: dict[str, Any], deadline: float) -> dict[str, Any]:
            posts.append(path)
            return post(path, payload, deadline)

        monkeypatch.setattr(store.client, "_post", counted)
    assert store.commit_sizes("photos") == measured
    if isinstance(store, EtcdStore):
        assert 0 < len(posts) <= len(measured) // 8 + 1, posts
    assert store.commit_sizes("photos2") == {} and store.commit_sizes("nothing") == {}
    assert store.commit_sizes("photo") == {cid(1): 555}


def test_pruning_takes_commits_out_of_the_total(store: MetadataStore) -> None:
    many = [commit_record(n) for n in range(MAX_TXN_OPS + 10)]
    store.import_repo(repo_record(), [branch_record()], many)
    assert store.repo_size("photos") == RepoSize(0, len(many))
    for n in range(0, len(many), 2):
        store.record_commit_size("photos", cid(n), n)
    measured = sum(range(0, len(many), 2))
    assert store.repo_size("photos") == RepoSize(measured, len(many) // 2)
    store.mark_pruned("photos", [cid(n) for n in range(4, len(many))] + [cid(4), cid(99999)])
    store.mark_pruned("photos", [cid(5)])  # again: nothing changes
    assert store.repo_size("photos") == RepoSize(0 + 2, 2)
    assert store.record_commit_size("photos", cid(5), 7) is False, "pruned"


def test_import_counts_pruned_commits_as_settled(store: MetadataStore) -> None:
    commits = [commit_record(1), commit_record(2, cid(1), pruned=True)]
    store.import_repo(repo_record(), [branch_record()], commits)
    assert store.repo_size("photos") == RepoSize(0, 1)


def test_delete_repo_drops_its_sizes(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    store.record_commit_size("photos", cid(1), 10)
    store.delete_repo("photos")
    assert store.repo_size("photos") is None and store.commit_size("photos", cid(1)) is None
    assert store.commit_sizes("photos") == {}
    store.forget_deleted_repo("photos")
    with_repo(store)
    assert store.repo_size("photos") == RepoSize(0, 0)


def test_a_repo_from_before_sizes_has_no_total(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    if isinstance(store, EtcdStore):
        store.client.delete(store.keys.size_total("photos"))
    else:
        assert isinstance(store, SqliteStore)
        with store._write() as db:
            db.execute("DELETE FROM repo_sizes WHERE repo='photos'")
    assert store.repo_size("photos") is None
    assert store.count_commits("photos") == 1, "counted from the records"
    assert store.record_commit_size("photos", cid(1), 10) is True
    assert store.commit_size("photos", cid(1)) == 10
    store.mark_pruned("photos", [cid(1)])
    assert store.repo_size("photos") is None


def test_commits_on_two_branches_at_once_are_all_counted(store: MetadataStore) -> None:
    with_repo(store)
    store.create_branch(branch_record(name="dev"))

    def commit_on(branch: str, first: int) -> None:
        parent = None
        for n in range(first, first + 8):
            intent = CommitIntent(commit_record(n, parent, branch=branch))
            store.begin_commit(intent)
            store.finish_commit(intent, generation=n)
            parent = cid(n)

    threads = [
        threading.Thread(target=commit_on, args=(b, f)) for b, f in (("master", 1), ("dev", 100))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.count_commits("photos") == 16
    assert store.repo_size("photos") == RepoSize(0, 16)
