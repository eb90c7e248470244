"""A node serves only copies it is listed as holding (issue 9, DESIGN.md "Cluster"): a
read-only snapshot under ``commits/`` whose record does not list this node (a receive
cut short, a copy never accepted) is never mounted, read, diffed or exported. On a
single host there is nowhere to fetch a whole copy from, so each is refused. Real btrfs
and SQLite."""

from __future__ import annotations

import pytest

from pfs_volume.errors import NotFound
from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.transfer import export_repo
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app


@pytest.fixture
def unlisted(volumes: VolumeService, repos: RepoService, store: SqliteStore) -> str:
    """Repo r: two commits on master; the newer one's snapshot is on disk, read-only,
    but its record lists no holder any more. Its id."""
    for n, text in enumerate(["one", "two"]):
        path = volumes.mount("pfs/r", f"m{n}")
        (path / "f").write_text(text)
        volumes.unmount("pfs/r", f"m{n}")
    head = repos.get_branch("r", "master").head
    assert head is not None
    store.remove_holder("r", head, repos.coordinator.node_id)
    assert repos.get_commit("r", head).holders == ()
    assert repos.pool.info(repos.commit_path("r", head)).readonly  # the copy is still there
    return head


def test_the_copy_is_not_taken_for_a_whole_one(repos: RepoService, unlisted: str) -> None:
    assert repos.snapshot_on_disk("r", unlisted)
    assert not repos.snapshot_exists("r", unlisted)
    with pytest.raises(NotFound, match="lists as held here"):
        repos.local_commit("r", unlisted)


def test_files_and_diff_refuse_it(
    repos: RepoService, volumes: VolumeService, unlisted: str
) -> None:
    client = api_app(repos, volumes).test_client()
    for path, params in [
        (f"/v1/repos/r/commits/{unlisted}/files", {}),
        (f"/v1/repos/r/commits/{unlisted}/content", {"path": "f"}),
        (f"/v1/repos/r/commits/{unlisted}/tar", {}),
        ("/v1/repos/r/diff", {"to": unlisted}),
        ("/v1/repos/r/diff", {"to": "master~1", "from": unlisted}),
        ("/v1/repos/r/export", {}),
    ]:
        reply = client.get(path, query_string=params)
        assert reply.status_code == 404, (path, reply.data[:300])
        assert b"two" not in reply.data
    reply = client.get(f"/v1/repos/r/commits/{unlisted}")
    assert reply.status_code == 200 and reply.json is not None
    assert reply.json["size"] is None and reply.json["files_changed"] is None


def test_mounts_refuse_it(repos: RepoService, volumes: VolumeService, unlisted: str) -> None:
    for name in (f"pfs/r@{unlisted}", "pfs/r@master~0", f"pfs/r/fresh@{unlisted}"):
        with pytest.raises(NotFound, match="lists as held here"):
            volumes.mount(name, "m-ro")
        assert volumes.path(name) == ""
    assert repos.store.list_mounts() == []
    assert not repos.is_working_copy("r", "fresh")


def test_export_refuses_it_before_the_first_byte(repos: RepoService, unlisted: str) -> None:
    with pytest.raises(NotFound, match="lists as held here"):
        export_repo(repos, "r")


def test_listed_again_it_is_served_again(
    repos: RepoService, volumes: VolumeService, store: SqliteStore, unlisted: str
) -> None:
    store.add_holder("r", unlisted, repos.coordinator.node_id)
    path = volumes.mount(f"pfs/r@{unlisted}", "m-ro")
    assert (path / "f").read_text() == "two"
    volumes.unmount(f"pfs/r@{unlisted}", "m-ro")
    _old, new, changes = repos.diff("r", parse_ref(unlisted))
    assert new.id == unlisted and [c.path for c in changes] == ["f"]
