"""The etcd store's sizes (``{prefix}/commit_sizes/<repo>/<id>`` and
``{prefix}/sizes/<repo>``, see the keyspace table in ``meta/etcd.py``): what each commit
wrote, and each repo's running total ``{bytes, settled, commits}``: the bytes of its
measured kept commits, how many of its commits are measured or pruned (the unmeasured
ones are the commit count less it), and how many commit records it has. The total changes
only in the transaction that records, measures or prunes a commit, each a
compare-and-swap on the total's mod revision."""

from __future__ import annotations

from dataclasses import replace

from pfs_volume.errors import Busy
from pfs_volume.meta.codec import commit_from
from pfs_volume.meta.etcd_cas import CAS_ATTEMPTS, guarded_write
from pfs_volume.meta.etcd_client import MAX_TXN_OPS, EtcdClient, KeyValue, Op, put_op
from pfs_volume.meta.etcd_keys import EtcdKeys, commit_json, dump, load
from pfs_volume.meta.records import RepoSize


class EtcdSizes:
    """The etcd store's size methods and pruning (a part of ``EtcdStore``, which sets
    ``client`` and ``keys``)."""

    client: EtcdClient
    keys: EtcdKeys

    def size_start_op(self, repo: str, settled: int = 0, commits: int = 0) -> Op:
        """The write of a new repo's total (with its repo record)."""
        total = {"bytes": 0, "settled": settled, "commits": commits}
        return put_op(self.keys.size_total(repo), dump(total))

    def one_more_commit_op(self, total: KeyValue) -> Op:
        """The write of a total that counts one more commit (with the commit's record,
        guarded by the total's mod revision)."""
        state = load(total)
        return put_op(total.key, dump({**state, "commits": state["commits"] + 1}))

    def count_commits(self, repo: str) -> int:
        """From the repo's total (one key), or for a repo made before totals were kept
        by counting its records (which costs what the history costs)."""
        total = self.client.get(self.keys.size_total(repo))
        if total is not None:
            return int(load(total)["commits"])
        return self.client.count_prefix(self.keys.commits(repo))

    def record_commit_size(self, repo: str, commit_id: str, size: int) -> bool:
        keys = [
            self.keys.commit(repo, commit_id),
            self.keys.commit_size(repo, commit_id),
            self.keys.size_total(repo),
        ]
        for _ in range(CAS_ATTEMPTS):
            commit, measured, total = self.client.get_many(keys)
            if commit is None or measured is not None or load(commit).get("pruned"):
                return False
            ops = [put_op(keys[1], dump({"bytes": size}))]
            unchanged = [commit]
            if total is not None:
                state = load(total)
                state.update(bytes=state["bytes"] + size, settled=state["settled"] + 1)
                ops.append(put_op(keys[2], dump(state)))
                unchanged.append(total)
            absent = [keys[1]] + ([keys[2]] if total is None else [])
            if guarded_write(self.client, ops, unchanged=unchanged, absent=absent):
                return True
        raise Busy(f"the size of repo {repo!r} kept changing while commit {commit_id} was measured")

    def commit_size(self, repo: str, commit_id: str) -> int | None:
        found = self.client.get(self.keys.commit_size(repo, commit_id))
        return int(load(found)["bytes"]) if found is not None else None

    def repo_size(self, repo: str) -> RepoSize | None:
        found = self.client.get(self.keys.size_total(repo))
        if found is None:
            return None
        state = load(found)
        return RepoSize(int(state["bytes"]), int(state["commits"]) - int(state["settled"]))

    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Mark commits pruned and take them out of the repo's total: in one transaction
        for up to about ``MAX_TXN_OPS`` of them, else in batches; an interruption leaves
        some marked (each batch with its total), which is safe: gc marks before it
        deletes, and start-up deletes the snapshots of marked commits."""
        keys = [self.keys.commit(repo, c) for c in dict.fromkeys(commit_ids)]
        batch = MAX_TXN_OPS - 1  # the total's write goes with each batch
        for start in range(0, len(keys), batch):
            self._mark_batch(repo, keys[start : start + batch])

    def _mark_batch(self, repo: str, keys: list[str]) -> None:
        sizes = [self.keys.commit_size(repo, key.rsplit("/", 1)[-1]) for key in keys]
        for _ in range(CAS_ATTEMPTS):
            *found, total = self.client.get_many([*keys, self.keys.size_total(repo)])
            records = [(kv, commit_from(load(kv), repo)) for kv in found if kv is not None]
            todo = [(kv, c) for kv, c in records if not c.pruned]
            if not todo:
                return
            ops = [put_op(kv.key, commit_json(replace(c, pruned=True))) for kv, c in todo]
            unchanged: list[KeyValue] = [kv for kv, _ in todo]
            if total is not None:
                measured = self._sizes(
                    [s for s in sizes if s.rsplit("/", 1)[-1] in {c.id for _, c in todo}]
                )
                state = load(total)
                state["bytes"] -= sum(measured.values())
                state["settled"] += len(todo) - len(measured)
                ops.append(put_op(total.key, dump(state)))
                unchanged.append(total)
            if guarded_write(self.client, ops, unchanged=unchanged):
                return
        raise Busy(f"commits of repo {repo!r} kept changing while being marked pruned")

    def _sizes(self, keys: list[str]) -> dict[str, int]:
        """The recorded sizes among ``keys`` (commit size keys), by key. Sizes are written
        once and only with the total, so the total's revision guards them."""
        found = self.client.get_many(keys)
        return {kv.key: int(load(kv)["bytes"]) for kv in found if kv is not None}
