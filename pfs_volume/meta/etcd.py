"""The cluster MetadataStore: records in etcd, shared by every node of a cluster.

The keyspace: every key pfs writes in etcd, under the store's prefix (``/pfs`` unless
configured) except the last. Values are compact JSON objects (document bodies as given)
with times in RFC 3339 UTC; ``%`` marks a percent-encoded name. Keep this table true.

====================================  =================================  ===================  =====
key                                   holds                              written by           lease
====================================  =================================  ===================  =====
repos/<repo>                          {created, description, replicas,   EtcdStore            no
                                      placement}
branches/<repo>/<branch>              {head, created}; the head moves    EtcdStore            no
                                      only by fenced CAS
commits/<repo>/<id>                   {id, branch, parent, created,      EtcdStore            no
                                      message, origin, pruned, holders,
                                      provenance, job, merge_parents}
imports/<repo>                        {node, token, started}: an import  EtcdStore            yes
                                      in progress, its claim on the      (etcd_names)
                                      name
log/<repo>/<age>/<id>                 [parents]: the log index, newest   EtcdStore            no
                                      first (``etcd_log``); written
                                      with the commit record
sizes/<repo>[/<branch>]               {bytes, settled, commits}: the     EtcdStore            no
                                      size total: base + branch parts
                                      summed (``etcd_sizes``)
commit_sizes/<repo>/<id>              {bytes}: what the commit wrote     EtcdStore            no
gone/<repo>                           {deleted, by}: deleted (on any     EtcdStore            no
                                      node) and not created again
docs/<kind>/<name%>                   a document's body (pipeline, job,  EtcdStore            no
                                      commit_error); the key's etcd
                                      version is its version
local/<node>/wc/<repo>/<branch>       {generation, base}: the node's     EtcdStore on <node>  no
                                      working copy of the branch
local/<node>/intents/<repo>/<id>      {repo, commit, mount_id}: a        EtcdStore on <node>  no
                                      commit being made
local/<node>/mounts/<id%>             {id, volume, repo, branch,         EtcdStore on <node>  no
                                      commit, created, uses}
local/<node>/volumes/<name%>          {name, repo, created}: a Docker    EtcdStore on <node>  no
                                      volume name
local/<node>/deleted/<repo>           {deleted}: a tombstone, until the  EtcdStore on <node>  no
                                      repo's data there is gone
nodes/<node>                          {id, address, started,             cluster.membership   yes
                                      free_bytes, pool_bytes}: a live
                                      node
locks/<repo>/<branch>                 {node, lease}: the branch's write  cluster.locks        yes
                                      lock; its create revision is the
                                      fence
/pfs-client/writes/<client>/<thread>  <token> 1|0: the marker that       etcd_once            no
                                      makes a thread's writes exactly-
                                      once (an absolute key)
====================================  =================================  ===================  =====

Every node also watches the whole prefix (``meta/etcd_watch.py``, from the revision its
last repair sweep started at): changes of ``nodes/``, ``repos/``, ``commits/``, ``gone/``
and ``locks/`` drive its repair (``cluster/repair.py``); it writes nothing of its own.
A second watch, of every key, notes which repo each write List can depend on touched:
``meta/etcd_changes.py``.

Repos, branches and commits are the cluster's; working copy state, commit intents, mounts,
Docker volume names and tombstones describe one node's disk and one node's Docker, so
each node keeps its own under ``local/<node>/``. ``get_branch`` and ``list_branches``
merge this node's working copy state into the shared branch record. Values are the
record codec's fields (``meta/codec.py``) less what the key says.

Every method that changes several records does so in one etcd transaction, except where
etcd's limit of ``MAX_TXN_OPS`` operations per transaction forbids it (imports of more
than about 120 commits, and ``mark_pruned`` or ``delete_repo`` over very many records):
those say how they stay correct when interrupted.

Every guarded write goes through ``etcd_cas.guarded_write``. Branch heads move only by
compare-and-swap on the branch key's mod revision, fenced (when a fence is given) by the
write lock key's create revision in the same transaction, so a writer whose lock expired
while it was paused cannot move a head (DESIGN.md, Cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import replace

from pfs_volume.errors import Conflict
from pfs_volume.meta import errors
from pfs_volume.meta.change_log import StoreChanges
from pfs_volume.meta.codec import branch_fields, commit_from, pick, repo_from
from pfs_volume.meta.etcd_cas import (
    COUNTED_ATTEMPTS,
    fence_held,
    guarded_write,
    pause_before,
    read_modify_write,
)
from pfs_volume.meta.etcd_client import (
    MAX_TXN_OPS,
    EtcdClient,
    KeyValue,
    Op,
    delete_op,
    delete_prefix_op,
    put_op,
)
from pfs_volume.meta.etcd_documents import EtcdDocuments
from pfs_volume.meta.etcd_keys import (
    BRANCH_VALUE,
    EtcdKeys,
    branch_of,
    commit_json,
    dump,
    last_component,
    load,
    repo_json,
    working_copy_json,
)
from pfs_volume.meta.etcd_local import EtcdNodeRecords
from pfs_volume.meta.etcd_log import EtcdCommitLog
from pfs_volume.meta.etcd_names import RepoNames
from pfs_volume.meta.etcd_sizes import EtcdSizes
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    Fence,
    RepoRecord,
    rfc3339,
    utcnow,
)
from pfs_volume.meta.store import MetadataStore

log = logging.getLogger(__name__)


FIND_LIMIT = 10
"""At most this many ids from ``find_commit_ids``: enough to show an ambiguous prefix."""


class EtcdStore(EtcdNodeRecords, EtcdDocuments, EtcdCommitLog, EtcdSizes, MetadataStore):
    """MetadataStore in etcd.

    Args:
        client: the cluster's client; the store uses it and never closes it (whoever
            made it closes it, after everything that shares it is done).
        node_id: this node's id: the key of its node-local records.
        prefix: the key prefix of every record (pfs clusters or tests can share etcd).
        changed_since: what ``changed_since`` says (``EtcdChanges.since``: its token
            moves only with writes that can change List); else the cluster's revision.
    Raises:
        InvalidName: a node id or prefix that would break the key layout.
    """

    def __init__(
        self,
        client: EtcdClient,
        node_id: str,
        prefix: str = "/pfs",
        changed_since: Callable[[Hashable | None], StoreChanges] | None = None,
    ) -> None:
        prefix = prefix.rstrip("/")
        self._changed_since = changed_since
        self.keys = EtcdKeys(prefix, node_id)
        self.client = client
        self.node_id = node_id
        self.prefix = prefix
        self._names = RepoNames(client, self.keys, node_id)

    # repos

    def create_repo(self, repo: RepoRecord, default_branch: BranchRecord) -> None:
        repo_put = put_op(self.keys.repo(repo.name), repo_json(repo))
        self._names.create(
            repo.name,
            [
                repo_put,
                delete_op(self.keys.gone(repo.name)),
                *self.size_start_ops(repo.name),
                *self._branch_ops(repo.name, default_branch),
            ],
        )

    def import_repo(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        """Add a repo with its branches and commits: in one transaction when they fit in
        one (up to ``MAX_TXN_OPS`` records), otherwise in several under a claim
        (``RepoNames.import_in_batches``)."""
        records = [put_op(self.keys.commit(repo.name, c.id), commit_json(c)) for c in commits]
        records += [self.log_entry_op(replace(c, repo=repo.name)) for c in commits]
        records += self.size_start_ops(repo.name, sum(c.pruned for c in commits), len(commits))
        for branch in branches:
            records += self._branch_ops(repo.name, branch)
        repo_put = put_op(self.keys.repo(repo.name), repo_json(repo))
        if len(records) + 2 <= MAX_TXN_OPS:
            gone = delete_op(self.keys.gone(repo.name))
            self._names.create(repo.name, [repo_put, gone, *records])
            return
        self._names.import_in_batches(repo.name, repo_put, records)

    def _branch_ops(self, repo: str, branch: BranchRecord) -> list[Op]:
        fields = branch_fields(branch)
        ops = [put_op(self.keys.branch(repo, branch.name), dump(pick(fields, BRANCH_VALUE)))]
        if branch.clean_generation is not None or branch.working_base is not None:
            ops.append(
                put_op(
                    self.keys.working_copy(repo, branch.name),
                    working_copy_json(branch.clean_generation, branch.working_base),
                )
            )
        return ops

    def get_repo(self, name: str) -> RepoRecord | None:
        found = self.client.get(self.keys.repo(name))
        return repo_from(load(found), name) if found is not None else None

    def list_repos(self) -> list[RepoRecord]:
        found = self.client.get_prefix(self.keys.repos())
        return [repo_from(load(kv), last_component(kv.key)) for kv in found]

    def delete_repo(self, name: str) -> None:
        """Drop the repo, its branches and commits, this node's working copy state,
        intents, mounts and volume names of it, and leave a tombstone here, in one
        transaction. Only when this node remembers more than about 120 mounts and volume
        names of the repo do the rest go in further transactions right after: an
        interruption then leaves some volume names pointing at no repo, which Docker shows
        and can remove. Other nodes' records of the repo are theirs to clear."""
        mounts = [self.keys.mount(m.id) for m in self.list_mounts() if m.repo == name]
        volumes = [self.keys.volume(v.name) for v in self.list_volumes() if v.repo == name]
        ops = [
            delete_op(self.keys.repo(name)),
            delete_prefix_op(self.keys.branches(name)),
            delete_prefix_op(self.keys.commits(name)),
            delete_prefix_op(self.keys.log(name)),
            delete_op(self.keys.size_total(name)),
            delete_prefix_op(self.keys.size_shards(name)),
            delete_prefix_op(self.keys.commit_sizes(name)),
            delete_prefix_op(self.keys.working_copies(name)),
            delete_prefix_op(self.keys.intents(name)),
            put_op(self.keys.tombstone(name), dump({"deleted": rfc3339(utcnow())})),
            put_op(self.keys.gone(name), dump({"deleted": rfc3339(utcnow()), "by": self.node_id})),
            *(delete_op(key) for key in mounts + volumes),
        ]
        for start in range(0, len(ops), MAX_TXN_OPS):
            self.client.txn([], ops[start : start + MAX_TXN_OPS])

    def list_deleted_repos(self) -> list[str]:
        found = self.client.get_prefix(self.keys.tombstones(), keys_only=True)
        return [last_component(kv.key) for kv in found]

    def repo_deleted(self, name: str) -> bool:
        gone, repo = self.client.get_many([self.keys.gone(name), self.keys.repo(name)])
        return gone is not None and repo is None

    def forget_deleted_repo(self, name: str) -> None:
        self.client.delete(self.keys.tombstone(name))

    # branches

    def create_branch(self, branch: BranchRecord) -> None:
        key = self.keys.branch(branch.repo, branch.name)
        repo_key = self.keys.repo(branch.repo)
        ops = self._branch_ops(branch.repo, branch)
        if guarded_write(self.client, ops, absent=[key], present=[repo_key]):
            return
        found, repo = self.client.get_many([key, repo_key])
        if found is not None:
            raise errors.branch_exists(branch.repo, branch.name)
        if repo is None:
            raise errors.no_repo(branch.repo)
        raise Conflict(f"branch {branch.repo}/{branch.name} changed while it was being created")

    def get_branch(self, repo: str, name: str) -> BranchRecord | None:
        found, wc = self.client.get_many(
            [self.keys.branch(repo, name), self.keys.working_copy(repo, name)]
        )
        return branch_of(repo, name, found, wc) if found is not None else None

    def list_branches(self, repo: str) -> list[BranchRecord]:
        found = self.client.get_prefix(self.keys.branches(repo))
        wcs = {
            last_component(kv.key): kv
            for kv in self.client.get_prefix(self.keys.working_copies(repo))
        }
        return [
            branch_of(repo, last_component(kv.key), kv, wcs.get(last_component(kv.key)))
            for kv in found
        ]

    def delete_branch(self, repo: str, name: str) -> None:
        keys = [self.keys.branch(repo, name), self.keys.working_copy(repo, name)]
        self.client.txn([], [delete_op(key) for key in keys])

    def move_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None = None,
    ) -> None:
        wc = delete_op(self.keys.working_copy(repo, branch))
        self._swap_head(repo, branch, expected, new, fence, [], [wc])

    def _swap_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None,
        absent: list[str],
        ops: list[Op],
        counted: bool = False,
    ) -> None:
        """Move the head from ``expected`` to ``new`` with ``ops``, in one write guarded
        by the head's mod revision, the fence and the ``absent`` keys; ``counted``: count
        the commit in its branch's part of the repo's total too (the size meter moves
        that part as well: retried, up to ``COUNTED_ATTEMPTS`` times, as no conflict).
        Raises NotFound (no such branch) or Conflict (the head is not ``expected``, the
        fence failed, or an ``absent`` key exists), having changed nothing."""
        key = self.keys.branch(repo, branch)
        for attempt in range(COUNTED_ATTEMPTS if counted else 1):
            pause_before(attempt)
            sizes = [self.keys.size_total(repo), self.keys.size_shard(repo, branch)]
            found, base, part = self.client.get_many([key, *sizes])
            if found is None:
                raise errors.no_branch(repo, branch)
            state = load(found)
            if state["head"] != expected:
                raise errors.head_moved(repo, branch, state["head"], expected)
            # The head's own text of its creation time stays as it was written.
            writes = [put_op(key, dump({"head": new, "created": state["created"]})), *ops]
            unchanged, missing = [found], list(absent)
            if counted:
                more, guards, none = self.one_more_commit(repo, branch, base, part)
                writes, unchanged, missing = writes + more, unchanged + guards, missing + none
            if guarded_write(self.client, writes, unchanged=unchanged, absent=missing, fence=fence):
                return
            locks = [] if fence is None else [fence.key]
            now, *rest = self.client.get_many([key, *locks, *absent])
            if fence is not None and not fence_held(fence, rest[0]):
                raise Conflict(
                    f"the write lock of {repo}/{branch} is no longer held by this node "
                    "(another node holds it now, or its lease expired): the head move was "
                    "fenced off"
                )
            if now is None:
                raise errors.no_branch(repo, branch)
            if load(now)["head"] != expected:
                raise errors.head_moved(repo, branch, load(now)["head"], expected)
            if any(kv is not None for kv in rest[len(locks) :]):
                break
        raise Conflict(f"branch {repo}/{branch} changed while its head was being moved")

    def set_clean_generation(
        self, repo: str, branch: str, generation: int, base: str | None
    ) -> None:
        stored = guarded_write(
            self.client,
            [put_op(self.keys.working_copy(repo, branch), working_copy_json(generation, base))],
            present=[self.keys.branch(repo, branch)],
        )
        if not stored:
            raise errors.no_branch(repo, branch)

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        def change(found: KeyValue | None) -> tuple[str | None, bool]:
            if found is None:
                raise errors.no_repo(repo)
            record = repo_from(load(found), repo)
            if record.placement != tuple(expected):
                return None, False
            return repo_json(replace(record, placement=tuple(new))), True

        busy = f"the placement of repo {repo!r} kept changing; try again"
        return read_modify_write(self.client, self.keys.repo(repo), change, busy)

    def add_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._update_commit(
            repo, commit_id, lambda c: replace(c, holders=tuple(sorted({*c.holders, node})))
        )

    def remove_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._update_commit(
            repo, commit_id, lambda c: replace(c, holders=tuple(h for h in c.holders if h != node))
        )

    def _update_commit(
        self, repo: str, commit_id: str, update: Callable[[CommitRecord], CommitRecord]
    ) -> None:
        """Read-modify-write a commit record with a compare-and-swap on its mod revision."""

        def change(found: KeyValue | None) -> tuple[str | None, None]:
            if found is None:
                raise errors.no_commit(repo, commit_id)
            record = commit_from(load(found), repo)
            updated = update(record)
            return (None if updated == record else commit_json(updated)), None

        busy = f"the record of commit {commit_id} kept changing; try again"
        read_modify_write(self.client, self.keys.commit(repo, commit_id), change, busy)

    # commits

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        found = self.client.get(self.keys.commit(repo, commit_id))
        return commit_from(load(found), repo) if found is not None else None

    def find_commit_ids(self, repo: str, prefix: str) -> list[str]:
        found = self.client.get_prefix(
            self.keys.commits(repo) + prefix, limit=FIND_LIMIT, keys_only=True
        )
        return [last_component(kv.key) for kv in found]

    def list_commits(self, repo: str) -> list[CommitRecord]:
        found = self.client.get_prefix(self.keys.commits(repo))
        commits = [commit_from(load(kv), repo) for kv in found]
        commits.sort(key=lambda c: c.id)
        commits.sort(key=lambda c: c.created, reverse=True)
        return commits

    def finish_commit(
        self, intent: CommitIntent, generation: int, fence: Fence | None = None
    ) -> None:
        c = intent.commit
        commit_key = self.keys.commit(c.repo, c.id)
        ops = [
            put_op(commit_key, commit_json(c)),
            self.log_entry_op(c),
            put_op(self.keys.working_copy(c.repo, c.branch), working_copy_json(generation, c.id)),
            delete_op(self.keys.intent(c)),
        ]
        if intent.mount_id is not None:
            ops.append(delete_op(self.keys.mount(intent.mount_id)))
        try:
            self._swap_head(c.repo, c.branch, c.parent, c.id, fence, [commit_key], ops, True)
        except Conflict:
            if self.client.get(commit_key) is not None:
                raise Conflict(f"commit {c.id} of repo {c.repo!r} is recorded already") from None
            raise

    def change_token(self) -> Hashable:
        """``changed_since``'s token, else the cluster's revision (any write moves it)."""
        found = self._changed_since
        return self.client.revision() if found is None else found(None).cursor

    def changed_since(self, cursor: Hashable | None) -> StoreChanges:
        found = self._changed_since
        return super().changed_since(cursor) if found is None else found(cursor)

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever made it."""
