"""The etcd store's sizes (``{prefix}/commit_sizes/<repo>/<id>`` and
``{prefix}/sizes/<repo>[/<branch>]``, see the keyspace table in ``meta/etcd.py``): what
each commit wrote, and each repo's running total ``{bytes, settled, commits}``: the bytes
of its measured kept commits, how many of its commits are measured or pruned (the
unmeasured ones are the commit count less it), and how many commit records it has.

The total is kept in parts summed when read: a base (``sizes/<repo>``, what the repo was
created or imported with; its presence says the repo's sizes are kept) and one part per
branch (``sizes/<repo>/<branch>``) that the commits recorded on that branch add to. A
single total was one hot key every commit of the repo had to swap: 8 branches committing
at once lost most of their tries on it (up to 320 a commit), and gc's pruning gave up
after 16. Now a commit swaps only its own branch's part, which only that branch's writer
(one per branch, by the write lock) and the size meter measuring that branch's commits
move; pruning swaps the parts of the branches whose commits it prunes. Each part changes
only in the transaction that records, measures or prunes a commit of its branch."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from pfs_volume.errors import Busy
from pfs_volume.meta.codec import commit_from
from pfs_volume.meta.etcd_cas import CAS_ATTEMPTS, guarded_write
from pfs_volume.meta.etcd_client import (
    MAX_TXN_OPS,
    EtcdClient,
    KeyValue,
    Op,
    delete_prefix_op,
    put_op,
)
from pfs_volume.meta.etcd_keys import EtcdKeys, commit_json, dump, load
from pfs_volume.meta.records import CommitRecord, RepoSize

ZERO = {"bytes": 0, "settled": 0, "commits": 0}


def _added(part: KeyValue | None, **deltas: int) -> dict[str, int]:
    """A branch's part with ``deltas`` added (a part not there yet counts zero)."""
    state = dict(ZERO) if part is None else {**ZERO, **load(part)}
    return {name: state[name] + deltas.get(name, 0) for name in ZERO}


class EtcdSizes:
    """The etcd store's size methods and pruning (a part of ``EtcdStore``, which sets
    ``client`` and ``keys``)."""

    client: EtcdClient
    keys: EtcdKeys

    def size_start_ops(self, repo: str, settled: int = 0, commits: int = 0) -> list[Op]:
        """The writes of a new repo's total (with its repo record): its base, and no
        branch parts (a deletion cut short may have left some)."""
        total = {"bytes": 0, "settled": settled, "commits": commits}
        return [
            put_op(self.keys.size_total(repo), dump(total)),
            delete_prefix_op(self.keys.size_shards(repo)),
        ]

    def one_more_commit(
        self, repo: str, branch: str, base: KeyValue | None, part: KeyValue | None
    ) -> tuple[list[Op], list[KeyValue], list[str]]:
        """What counts one more commit on ``branch`` in a commit's transaction: its ops,
        and the keys to guard (unchanged, absent). Nothing when the repo keeps no sizes
        (``base`` None)."""
        if base is None:
            return [], [], []
        key = self.keys.size_shard(repo, branch)
        op = put_op(key, dump(_added(part, commits=1)))
        return [op], [base] + ([part] if part is not None else []), ([key] if part is None else [])

    def count_commits(self, repo: str) -> int:
        """From the repo's total (a base and a part per branch), or for a repo made before
        totals were kept by counting its records (which costs what the history costs)."""
        total = self._total(repo)
        if total is not None:
            return total["commits"]
        return self.client.count_prefix(self.keys.commits(repo))

    def record_commit_size(self, repo: str, commit_id: str, size: int) -> bool:
        keys = [
            self.keys.commit(repo, commit_id),
            self.keys.commit_size(repo, commit_id),
            self.keys.size_total(repo),
        ]
        for _ in range(CAS_ATTEMPTS):
            commit, measured, base = self.client.get_many(keys)
            if commit is None or measured is not None or load(commit).get("pruned"):
                return False
            ops = [put_op(keys[1], dump({"bytes": size}))]
            unchanged, absent = [commit], [keys[1]]
            if base is None:
                absent.append(keys[2])
            else:
                part_key = self.keys.size_shard(repo, commit_from(load(commit), repo).branch)
                part = self.client.get(part_key)
                ops.append(put_op(part_key, dump(_added(part, bytes=size, settled=1))))
                unchanged += [base] + ([part] if part is not None else [])
                absent += [part_key] if part is None else []
            if guarded_write(self.client, ops, unchanged=unchanged, absent=absent):
                return True
        raise Busy(f"the size of repo {repo!r} kept changing while commit {commit_id} was measured")

    def commit_size(self, repo: str, commit_id: str) -> int | None:
        found = self.client.get(self.keys.commit_size(repo, commit_id))
        return int(load(found)["bytes"]) if found is not None else None

    def commit_sizes(self, repo: str) -> dict[str, int]:
        prefix = self.keys.commit_sizes(repo)
        found = self.client.get_prefix(prefix)
        return {kv.key.removeprefix(prefix): int(load(kv)["bytes"]) for kv in found}

    def repo_size(self, repo: str) -> RepoSize | None:
        total = self._total(repo)
        if total is None:
            return None
        return RepoSize(total["bytes"], total["commits"] - total["settled"])

    def _total(self, repo: str) -> dict[str, int] | None:
        """The base and every branch's part summed; None: the repo keeps no sizes."""
        base = self.client.get(self.keys.size_total(repo))
        if base is None:
            return None
        parts = [load(base), *map(load, self.client.get_prefix(self.keys.size_shards(repo)))]
        return {name: sum(int(part.get(name, 0)) for part in parts) for name in ZERO}

    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Mark commits pruned and take them out of the repo's total: in one transaction
        for up to about ``MAX_TXN_OPS`` of them, else in batches; an interruption leaves
        some marked (each batch with its total), which is safe: gc marks before it
        deletes, and start-up deletes the snapshots of marked commits."""
        keys = [self.keys.commit(repo, c) for c in dict.fromkeys(commit_ids)]
        batch = MAX_TXN_OPS // 2 - 1  # with each batch: the parts it changes, the base
        for start in range(0, len(keys), batch):
            self._mark_batch(repo, keys[start : start + batch])

    def _mark_batch(self, repo: str, keys: list[str]) -> None:
        for _ in range(CAS_ATTEMPTS):
            *found, base = self.client.get_many([*keys, self.keys.size_total(repo)])
            records = [(kv, commit_from(load(kv), repo)) for kv in found if kv is not None]
            todo = [(kv, c) for kv, c in records if not c.pruned]
            if not todo:
                return
            ops = [put_op(kv.key, commit_json(replace(c, pruned=True))) for kv, c in todo]
            unchanged: list[KeyValue] = [kv for kv, _ in todo]
            absent: list[str] = []
            if base is not None:
                more, guards, absent = self._prune_from_parts(repo, [c for _, c in todo])
                ops, unchanged = ops + more, unchanged + guards + [base]
            if guarded_write(self.client, ops, unchanged=unchanged, absent=absent):
                return
        raise Busy(f"commits of repo {repo!r} kept changing while being marked pruned")

    def _prune_from_parts(
        self, repo: str, commits: list[CommitRecord]
    ) -> tuple[list[Op], list[KeyValue], list[str]]:
        """What takes ``commits`` out of their branches' parts of the repo's total: the
        ops, and the keys to guard (unchanged, absent)."""
        by_branch: dict[str, list[str]] = defaultdict(list)
        for commit in commits:
            by_branch[commit.branch].append(self.keys.commit_size(repo, commit.id))
        part_keys = [self.keys.size_shard(repo, branch) for branch in by_branch]
        # The parts first, then the sizes: a size recorded after the parts were read
        # moved its part, and the guard fails; one recorded before is in what is read.
        parts = self.client.get_many(part_keys)
        measured = self._sizes([self.keys.commit_size(repo, c.id) for c in commits])
        ops, unchanged, absent = [], [], []
        for key, part, sizes in zip(part_keys, parts, by_branch.values(), strict=True):
            freed = sum(measured.get(size, 0) for size in sizes)
            unmeasured = sum(size not in measured for size in sizes)
            ops.append(put_op(key, dump(_added(part, bytes=-freed, settled=unmeasured))))
            if part is None:
                absent.append(key)
            else:
                unchanged.append(part)
        return ops, unchanged, absent

    def _sizes(self, keys: list[str]) -> dict[str, int]:
        """The recorded sizes among ``keys`` (commit size keys), by key. A size is written
        once and only with its branch's part, so that part's revision guards it."""
        found = self.client.get_many(keys)
        return {kv.key: int(load(kv)["bytes"]) for kv in found if kv is not None}
