"""The etcd store's log index (``{prefix}/log/<repo>/<age>/<id>``, see the keyspace table
in ``meta/etcd.py``): each commit's parents under a key that sorts newest first, so a
history walk reads its next commits in one range read instead of a round trip per commit.

``<age>`` is ``AGE_TOP`` less the commit's creation time in microseconds since the epoch,
as ``AGE_DIGITS`` digits: etcd returns a range in ascending key order cheaply (a
descending sort makes it read the whole range), so the newest commit must have the
smallest key. Within one microsecond, keys go by id, as the log does. A commit's parents
never change, so an entry is written once, with its commit record, and deleted with the
repo.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pfs_volume.meta.codec import commit_from, repo_from
from pfs_volume.meta.etcd_client import EtcdClient, Op, put_op
from pfs_volume.meta.etcd_keys import EtcdKeys, branch_of, check_component, load
from pfs_volume.meta.records import BranchRecord, CommitLinks, CommitRecord, RepoRecord

AGE_DIGITS = 19
AGE_TOP = 10**AGE_DIGITS - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def age(created: datetime) -> str:
    """The ``<age>`` key component of a commit made at ``created``: smaller for newer."""
    return f"{AGE_TOP - (_aware(created) - _EPOCH) // _MICROSECOND:0{AGE_DIGITS}d}"


def created_of(age_text: str) -> datetime:
    """The creation time an ``<age>`` component stands for (UTC)."""
    return _EPOCH + timedelta(microseconds=AGE_TOP - int(age_text))


class EtcdCommitLog:
    """The etcd store's batched commit reads (a part of ``EtcdStore``, which sets
    ``client`` and ``keys``)."""

    client: EtcdClient
    keys: EtcdKeys

    def log_entry_op(self, commit: CommitRecord) -> Op:
        """The write of a commit's log index entry (goes with its record's first write)."""
        key = f"{self.keys.log(commit.repo)}{age(commit.created)}/"
        return put_op(key + check_component(commit.id, "commit id"), json.dumps(commit.parents))

    def get_repo_branch(
        self, repo: str, name: str
    ) -> tuple[RepoRecord | None, BranchRecord | None]:
        found, branch, wc = self.client.get_many(
            [self.keys.repo(repo), self.keys.branch(repo, name), self.keys.working_copy(repo, name)]
        )
        return (
            repo_from(load(found), repo) if found is not None else None,
            branch_of(repo, name, branch, wc) if branch is not None else None,
        )

    def get_commits(self, repo: str, commit_ids: list[str]) -> list[CommitRecord | None]:
        found = self.client.get_many([self.keys.commit(repo, c) for c in commit_ids])
        return [commit_from(load(kv), repo) if kv is not None else None for kv in found]

    def commit_links(self, repo: str, after: tuple[datetime, str], limit: int) -> list[CommitLinks]:
        """Read in time windows: etcd 3.4 reads all of a range to answer even a limited
        request, so an unbounded range would cost what the whole history costs. The
        first window is ``FIRST_WINDOW`` back from ``after``, each next one
        ``WINDOW_GROWTH`` times longer, so a sparse history takes a few reads more, and
        a dense one reads little more than the page."""
        prefix = self.keys.log(repo)
        created, commit_id = after
        # The first key after ``after``'s own: its id with a zero byte appended.
        first = f"{prefix}{age(created)}/{commit_id}\0"
        links: list[CommitLinks] = []
        window, edge = FIRST_WINDOW, _aware(created)
        for _ in range(MAX_WINDOWS):
            edge = edge - window if edge - window > _EPOCH else _EPOCH
            before = None if edge == _EPOCH else prefix + age(edge)
            found = self.client.get_range(first, prefix, before=before, limit=limit - len(links))
            links += [_links(kv.key[len(prefix) :], kv.value) for kv in found]
            if len(links) >= limit or before is None:
                break
            first, window = before, window * WINDOW_GROWTH
        return links


FIRST_WINDOW = timedelta(seconds=1)
WINDOW_GROWTH = 16
MAX_WINDOWS = 16
"""A bound only: the tenth window (16**9 s) already reaches back past 1970, and a
window that does reads the rest of the range."""


def _links(rest: str, value: bytes) -> CommitLinks:
    """A log entry from its key below the repo's prefix and its value."""
    age_text, entry_id = rest.split("/")
    return CommitLinks(entry_id, created_of(age_text), tuple(json.loads(value)))
