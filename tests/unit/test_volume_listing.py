"""``OnceReads.matching``: in a repo of more than ``PREFETCH_COMMITS`` commits, a commit
prefix answered by a shorter one only when that is exact (it matched at most one commit),
else asked of the store; in a smaller one, every id read once and each prefix found
among them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from pfs_volume.meta import MetadataStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes.listing import PREFETCH_COMMITS, OnceReads

IDS = ["abcdef01" + "0" * 24, "abcdef02" + "0" * 24, "123456ff" + "1" * 24]


class CountingStore:
    def __init__(self, commits: int = PREFETCH_COMMITS + 1) -> None:
        self.asked: list[str] = []
        self.listed = 0
        self.commits = commits

    def count_commits(self, repo: str) -> int:
        return self.commits

    def list_commits(self, repo: str) -> list[Any]:
        self.listed += 1
        return [SimpleNamespace(id=i) for i in IDS]

    def find_commit_ids(self, repo: str, prefix: str) -> list[str]:
        self.asked.append(prefix)
        return [i for i in IDS if i.startswith(prefix)]


def reads(commits: int = PREFETCH_COMMITS + 1) -> tuple[OnceReads, CountingStore]:
    store = CountingStore(commits)
    return OnceReads(cast(RepoService, None), cast(MetadataStore, cast(Any, store))), store


def test_a_prefix_that_matched_one_commit_answers_for_longer_ones() -> None:
    once, store = reads()
    assert once.matching("r", "123456") == [IDS[2]]
    assert once.matching("r", "123456ff1") == [IDS[2]]
    assert once.matching("r", "1234560") == []
    assert store.asked == ["123456"]


def test_a_prefix_that_matched_nothing_answers_for_longer_ones() -> None:
    once, store = reads()
    assert once.matching("r", "ffffff") == []
    assert once.matching("r", "ffffff00") == []
    assert store.asked == ["ffffff"]


def test_an_ambiguous_prefix_answers_for_nothing_longer() -> None:
    once, store = reads()
    assert once.matching("r", "abcdef") == IDS[:2]
    assert once.matching("r", "abcdef01") == [IDS[0]]
    assert once.matching("r", "abcdef") == IDS[:2]
    assert store.asked == ["abcdef", "abcdef01"]


def test_prefixes_of_other_repos_are_their_own() -> None:
    once, store = reads()
    once.matching("r", "123456")
    once.matching("s", "123456ff")
    assert store.asked == ["123456", "123456ff"]


def test_a_small_repo_reads_its_ids_once_and_asks_no_prefix() -> None:
    once, store = reads(commits=len(IDS))
    assert once.matching("r", "abcdef") == IDS[:2]
    assert once.matching("r", "abcdef02") == [IDS[1]]
    assert once.matching("r", "123456") == [IDS[2]]
    assert once.matching("r", "ffffff") == []
    assert store.asked == [] and store.listed == 1
