"""Docker's List on a real btrfs pool and SQLite store: every volume's mountpoint is its
target's path when that exists now, "" otherwise, after each change that moves it, and
always what Get says of the same name."""

from __future__ import annotations

import itertools

from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService

ids = itertools.count()


def listed(volumes: VolumeService) -> dict[str, str]:
    """List's answer as name -> mountpoint, checked against Get of every name."""
    answer = {v.name: v.mountpoint for v in volumes.list()}
    one_by_one = {name: volumes.get(name).mountpoint for name in answer}
    assert answer == one_by_one
    return answer


def commit(volumes: VolumeService, repos: RepoService, branch: str, text: str) -> str:
    """Mount the branch, write, unmount (which commits); the new head."""
    name = f"photos/{branch}"
    mount_id = f"m{next(ids)}"
    (volumes.mount(name, mount_id) / "f.txt").write_text(text)
    volumes.unmount(name, mount_id)
    head = repos.find_branch("photos", branch)
    assert head is not None and head.head is not None
    return head.head


def test_list_follows_working_copies_commits_branches_and_repos(
    volumes: VolumeService, repos: RepoService
) -> None:
    volumes.create("photos", {})
    first = commit(volumes, repos, "master", "1")
    names = {
        "master": "photos",
        "prefixed": "pfs/photos@master",
        "dev": "photos/dev",
        "pinned": f"photos@{first}",
        "short": f"pfs/photos@{first[:8]}",
        "latest": "photos@master~0",
        "fix": f"photos/fix@{first}",
    }
    for name in names.values():
        volumes.create(name, {})
    wc = {b: str(repos.branch_path("photos", b)) for b in ("master", "dev", "fix")}
    at = {c: str(repos.commit_path("photos", c)) for c in (first,)}
    expected = {
        names["master"]: wc["master"],
        "photos/master": wc["master"],  # mounted by ``commit``
        names["prefixed"]: wc["master"],
        names["dev"]: wc["dev"],
        names["pinned"]: at[first],
        names["short"]: at[first],
        names["latest"]: at[first],
        names["fix"]: wc["fix"],
    }
    assert listed(volumes) == expected

    # A working copy retired: "" until the next mount makes it again.
    repos.drop_working_copy("photos", "dev")
    assert listed(volumes)[names["dev"]] == ""
    mount_id = f"m{next(ids)}"
    volumes.mount(names["dev"], mount_id)
    assert listed(volumes)[names["dev"]] == wc["dev"]
    volumes.unmount(names["dev"], mount_id)

    # A new commit moves master~0; gc prunes the first commit's snapshot.
    second = commit(volumes, repos, "master", "2")
    assert listed(volumes)[names["latest"]] == str(repos.commit_path("photos", second))
    # branch fix@first exists at first: its head is first, still consistent
    assert listed(volumes)[names["fix"]] == wc["fix"]
    repos.delete_branch("photos", "fix")
    repos.delete_branch("photos", "dev")
    repos.gc("photos", keep_last=1)
    repos.drain_pending()
    after_gc = listed(volumes)
    assert after_gc[names["pinned"]] == after_gc[names["short"]] == ""
    assert after_gc[names["dev"]] == "", "a deleted branch's working copy is gone"
    assert after_gc[names["fix"]] == "", "fix@first: first was pruned"
    assert after_gc[names["master"]] == wc["master"]

    # The repo deleted: its names are forgotten with it; made again, from nothing.
    repos.delete_repo("photos")
    repos.drain_pending()
    assert listed(volumes) == {}
    volumes.create("photos/master", {})
    assert listed(volumes) == {"photos/master": wc["master"]}


def test_a_branch_named_like_a_commit_prefix_takes_the_name_over(
    volumes: VolumeService, repos: RepoService
) -> None:
    volumes.create("photos", {})
    head = commit(volumes, repos, "master", "1")
    name = f"photos@{head[:8]}"
    volumes.create(name, {})
    assert listed(volumes)[name] == str(repos.commit_path("photos", head))
    repos.create_branch("photos", head[:8], parse_ref("master"))
    assert listed(volumes)[name] == "", "now a branch, whose working copy is not made yet"
    volumes.create(f"photos/{head[:8]}", {})
    assert listed(volumes)[name] == str(repos.branch_path("photos", head[:8]))


def test_list_of_a_name_that_means_nothing_now_is_empty(
    volumes: VolumeService, repos: RepoService
) -> None:
    volumes.create("photos", {})
    head = commit(volumes, repos, "master", "1")
    volumes.create(f"photos/side@{head}", {})
    commit(volumes, repos, "side", "2")  # side moved on: side@head is a conflict now
    volumes.create("photos@master~0", {})
    repos.reset_branch("photos", "master", parse_ref(head))
    answer = listed(volumes)
    assert answer[f"photos/side@{head}"] == ""
    assert answer["photos@master~0"] == str(repos.commit_path("photos", head))
