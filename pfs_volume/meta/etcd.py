"""The cluster MetadataStore: records in etcd, shared by every node of a cluster.

Key layout (values are small JSON documents; times RFC 3339 UTC)::

    {prefix}/repos/<repo>                        {created, description, replicas, placement}
    {prefix}/branches/<repo>/<branch>            {head, created}
    {prefix}/commits/<repo>/<id>                 {branch, parent, created, message, origin,
                                                  pruned, holders, provenance, job,
                                                  merge_parents}
    {prefix}/imports/<repo>                      {node, token, started}: an import in
                                                  progress, bound to a lease
    {prefix}/local/<node>/wc/<repo>/<branch>     {generation, base}: this node's working copy
    {prefix}/local/<node>/intents/<repo>/<id>    {commit, mount_id}
    {prefix}/local/<node>/mounts/<mount id>      {volume, repo, branch, commit, created}
    {prefix}/local/<node>/volumes/<volume name>  {repo, created}  (name percent-encoded)
    {prefix}/local/<node>/deleted/<repo>         {deleted}: a tombstone

Repos, branches and commits are the cluster's; working copy state, commit intents, mounts,
Docker volume names and tombstones describe one node's disk and one node's Docker, so
each node keeps its own under ``local/<node>/``. ``get_branch`` and ``list_branches``
merge this node's working copy state into the shared branch record.

Every method that changes several records does so in one etcd transaction, except where
etcd's limit of ``MAX_TXN_OPS`` operations per transaction forbids it (imports of more
than about 120 commits, and ``mark_pruned`` or ``delete_repo`` over very many records):
those say how they stay correct when interrupted.

Branch heads move only by compare-and-swap on the branch key's mod revision, fenced (when
a fence is given) by the write lock key's create revision in the same transaction, so a
writer whose lock expired while it was paused cannot move a head (DESIGN.md, Cluster).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from pfs_volume.errors import Busy, Conflict, InvalidName, NotFound, Unavailable
from pfs_volume.meta.etcd_client import (
    MAX_TXN_OPS,
    Compare,
    EtcdClient,
    KeyValue,
    Op,
    create_revision_equals,
    delete_op,
    delete_prefix_op,
    key_exists,
    mod_revision_equals,
    prefix_empty,
    put_op,
    version_equals,
)
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    Fence,
    MountRecord,
    RepoRecord,
    VolumeRecord,
    rfc3339,
    utcnow,
)
from pfs_volume.meta.store import MetadataStore

log = logging.getLogger(__name__)
T = TypeVar("T")

CAS_ATTEMPTS = 16
"""Read-modify-write retries (holders, placement, pruned marks) before giving up with
Busy: each lost race means another writer succeeded, so this many in a row means a
storm, not bad luck."""
IMPORT_LEASE_TTL = 60
"""Seconds an import's claim on its repo name outlives a crashed importer."""
FIND_LIMIT = 10
"""At most this many ids from ``find_commit_ids``: enough to show an ambiguous prefix."""


class EtcdStore(MetadataStore):
    """MetadataStore in etcd.

    Args:
        client: the cluster's client; the store uses it and never closes it (whoever
            made it closes it, after everything that shares it is done).
        node_id: this node's id: the key of its node-local records.
        prefix: the key prefix of every record, so several pfs clusters (or tests) can
            share one etcd.
    Raises:
        InvalidName: a node id or prefix that would break the key layout.
    """

    def __init__(self, client: EtcdClient, node_id: str, prefix: str = "/pfs") -> None:
        _check_component(node_id, "node id")
        prefix = prefix.rstrip("/")
        self.client = client
        self.node_id = node_id
        self.prefix = prefix
        self._local = f"{prefix}/local/{node_id}/"

    # keys

    def _repo_key(self, repo: str) -> str:
        return f"{self.prefix}/repos/{_check_component(repo, 'repo')}"

    def _branches_prefix(self, repo: str) -> str:
        return f"{self.prefix}/branches/{_check_component(repo, 'repo')}/"

    def _branch_key(self, repo: str, branch: str) -> str:
        return self._branches_prefix(repo) + _check_component(branch, "branch")

    def _commits_prefix(self, repo: str) -> str:
        return f"{self.prefix}/commits/{_check_component(repo, 'repo')}/"

    def _commit_key(self, repo: str, commit_id: str) -> str:
        return self._commits_prefix(repo) + _check_component(commit_id, "commit id")

    def _claim_key(self, repo: str) -> str:
        return f"{self.prefix}/imports/{_check_component(repo, 'repo')}"

    def _wc_prefix(self, repo: str) -> str:
        return f"{self._local}wc/{_check_component(repo, 'repo')}/"

    def _wc_key(self, repo: str, branch: str) -> str:
        return self._wc_prefix(repo) + _check_component(branch, "branch")

    def _intents_prefix(self, repo: str | None = None) -> str:
        if repo is None:
            return f"{self._local}intents/"
        return f"{self._local}intents/{_check_component(repo, 'repo')}/"

    def _intent_key(self, commit: CommitRecord) -> str:
        return self._intents_prefix(commit.repo) + _check_component(commit.id, "commit id")

    def _mount_key(self, mount_id: str) -> str:
        return f"{self._local}mounts/{quote(mount_id, safe='')}"

    def _volume_key(self, name: str) -> str:
        return f"{self._local}volumes/{quote(name, safe='')}"

    def _gone_key(self, repo: str) -> str:
        """Cluster-wide: the repo was deleted (removed when the name is created again)."""
        return f"{self.prefix}/gone/{_check_component(repo, 'repo')}"

    def _tombstone_key(self, repo: str) -> str:
        return f"{self._local}deleted/{_check_component(repo, 'repo')}"

    # repos

    def create_repo(self, repo: RepoRecord, default_branch: BranchRecord) -> None:
        repo_put = put_op(self._repo_key(repo.name), _repo_json(repo))
        self._create_name(
            repo.name,
            [
                repo_put,
                delete_op(self._gone_key(repo.name)),
                *self._branch_ops(repo.name, default_branch),
            ],
        )

    def import_repo(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        """Add a repo with its branches and commits: in one transaction when they fit in
        one (up to ``MAX_TXN_OPS`` records), otherwise in several under a claim.

        The claim is a key bound to a lease, taken in a transaction that also checks the
        name is free and sweeps leftovers of an earlier interrupted import. The commit
        records then go in batches, each fenced by the claim's create revision; the last
        transaction writes the branches (those that fit) and the repo record and drops
        the claim. Until then no repo record exists, so the repo is invisible and its
        name taken; if the importer dies, its lease expires within
        ``IMPORT_LEASE_TTL`` and the next create or import of that name sweeps what it
        left.
        """
        records = [put_op(self._commit_key(repo.name, c.id), _commit_json(c)) for c in commits]
        for branch in branches:
            records += self._branch_ops(repo.name, branch)
        repo_put = put_op(self._repo_key(repo.name), _repo_json(repo))
        if len(records) + 2 <= MAX_TXN_OPS:
            self._create_name(repo.name, [repo_put, delete_op(self._gone_key(repo.name)), *records])
            return
        self._import_in_batches(repo.name, repo_put, records)

    def _branch_ops(self, repo: str, branch: BranchRecord) -> list[Op]:
        ops = [
            put_op(self._branch_key(repo, branch.name), _branch_json(branch.head, branch.created))
        ]
        if branch.clean_generation is not None or branch.working_base is not None:
            ops.append(
                put_op(
                    self._wc_key(repo, branch.name),
                    _wc_json(branch.clean_generation, branch.working_base),
                )
            )
        return ops

    def _name_free(self, repo: str) -> list[Compare]:
        """The repo name is free: no repo, no import in progress, no tombstone here."""
        return [
            create_revision_equals(self._repo_key(repo), 0),
            create_revision_equals(self._claim_key(repo), 0),
            create_revision_equals(self._tombstone_key(repo), 0),
        ]

    def _create_name(self, repo: str, ops: list[Op]) -> None:
        """Write ``ops`` in one transaction if the name is free and holds no leftovers."""
        leftovers_free = [
            prefix_empty(self._branches_prefix(repo)),
            prefix_empty(self._commits_prefix(repo)),
        ]
        for _ in range(2):
            if self.client.txn([*self._name_free(repo), *leftovers_free], ops):
                return
            self._raise_if_taken(repo)
            self._sweep(repo)
        raise Conflict(f"repo {repo!r} is being created by another node right now; try again")

    def _raise_if_taken(self, repo: str) -> None:
        found, claim, tombstone = self.client.get_many(
            [self._repo_key(repo), self._claim_key(repo), self._tombstone_key(repo)]
        )
        if found is not None:
            raise Conflict(f"repo {repo!r} exists already")
        if claim is not None:
            node = _load(claim).get("node", "?")
            raise Conflict(f"repo {repo!r} is being imported (by node {node}) right now")
        if tombstone is not None:
            raise Conflict(f"repo {repo!r} is still being deleted")

    def _sweep(self, repo: str) -> None:
        """Delete branch and commit records an interrupted import left under a name that
        has no repo record and no import in progress."""
        swept = self.client.txn(
            self._name_free(repo)[:2],
            [
                delete_prefix_op(self._branches_prefix(repo)),
                delete_prefix_op(self._commits_prefix(repo)),
            ],
        )
        if swept:
            log.warning("repo=%s swept records an interrupted import left", repo)

    def _import_in_batches(self, repo: str, repo_put: Op, records: list[Op]) -> None:
        lease = self.client.grant_lease(IMPORT_LEASE_TTL)
        try:
            token = secrets.token_hex(8)
            claim_key = self._claim_key(repo)
            claim = {"node": self.node_id, "token": token, "started": rfc3339(utcnow())}
            taken = self.client.txn(
                self._name_free(repo),
                [
                    put_op(claim_key, _dump(claim), lease),
                    delete_prefix_op(self._branches_prefix(repo)),
                    delete_prefix_op(self._commits_prefix(repo)),
                ],
            )
            if not taken:
                self._raise_if_taken(repo)
                raise Conflict(f"repo {repo!r} is being created by another node right now")
            mine = self.client.get(claim_key)
            if mine is None or _load(mine).get("token") != token:
                raise Conflict(f"the import of repo {repo!r} lost its claim on the name")
            held = create_revision_equals(claim_key, mine.create_revision)
            # The last transaction also writes the repo record, drops the claim and clears
            # the name's "deleted" mark.
            split = max(0, len(records) - (MAX_TXN_OPS - 3))
            body, tail = records[:split], records[split:]
            renewed = time.monotonic()
            for start in range(0, len(body), MAX_TXN_OPS):
                if time.monotonic() - renewed > IMPORT_LEASE_TTL / 3:
                    self.client.refresh_lease(lease)
                    renewed = time.monotonic()
                if not self.client.txn([held], body[start : start + MAX_TXN_OPS]):
                    raise Conflict(
                        f"the import of repo {repo!r} lost its claim on the name (its lease "
                        "expired, or the claim was removed); nothing of it is visible"
                    )
            done = self.client.txn(
                [held, create_revision_equals(self._repo_key(repo), 0)],
                [*tail, repo_put, delete_op(claim_key), delete_op(self._gone_key(repo))],
            )
            if not done:
                raise Conflict(f"the import of repo {repo!r} lost its claim on the name")
            batches = -(-len(body) // MAX_TXN_OPS) + 2
            log.info("repo=%s imported in %d transactions under a claim", repo, batches)
        finally:
            try:
                self.client.revoke_lease(lease)
            except Unavailable as exc:
                log.warning("repo=%s import lease not revoked (it expires): %s", repo, exc)

    def get_repo(self, name: str) -> RepoRecord | None:
        found = self.client.get(self._repo_key(name))
        return _repo(name, found) if found is not None else None

    def list_repos(self) -> list[RepoRecord]:
        found = self.client.get_prefix(f"{self.prefix}/repos/")
        return [_repo(_last(kv.key), kv) for kv in found]

    def delete_repo(self, name: str) -> None:
        """Drop the repo, its branches and commits, this node's working copy state,
        intents, mounts and volume names of it, and leave a tombstone here, in one
        transaction. Only when this node remembers more than about 120 mounts and volume
        names of the repo do the rest go in further transactions right after: an
        interruption then leaves some volume names pointing at no repo, which Docker shows
        and can remove. Other nodes' records of the repo are theirs to clear."""
        mounts = [
            self._mount_key(m.id)
            for m in self._local_records(f"{self._local}mounts/", _mount)
            if m.repo == name
        ]
        volumes = [
            self._volume_key(v.name)
            for v in self._local_records(f"{self._local}volumes/", _volume)
            if v.repo == name
        ]
        ops = [
            delete_op(self._repo_key(name)),
            delete_prefix_op(self._branches_prefix(name)),
            delete_prefix_op(self._commits_prefix(name)),
            delete_prefix_op(self._wc_prefix(name)),
            delete_prefix_op(self._intents_prefix(name)),
            put_op(self._tombstone_key(name), _dump({"deleted": rfc3339(utcnow())})),
            put_op(self._gone_key(name), _dump({"deleted": rfc3339(utcnow()), "by": self.node_id})),
            *(delete_op(key) for key in mounts + volumes),
        ]
        for start in range(0, len(ops), MAX_TXN_OPS):
            self.client.txn([], ops[start : start + MAX_TXN_OPS])

    def list_deleted_repos(self) -> list[str]:
        found = self.client.get_prefix(f"{self._local}deleted/", keys_only=True)
        return [_last(kv.key) for kv in found]

    def repo_deleted(self, name: str) -> bool:
        gone, repo = self.client.get_many([self._gone_key(name), self._repo_key(name)])
        return gone is not None and repo is None

    def forget_deleted_repo(self, name: str) -> None:
        self.client.delete(self._tombstone_key(name))

    # branches

    def create_branch(self, branch: BranchRecord) -> None:
        key = self._branch_key(branch.repo, branch.name)
        repo_key = self._repo_key(branch.repo)
        created = self.client.txn(
            [create_revision_equals(key, 0), key_exists(repo_key)],
            self._branch_ops(branch.repo, branch),
        )
        if created:
            return
        found, repo = self.client.get_many([key, repo_key])
        if found is not None:
            raise Conflict(f"branch {branch.repo}/{branch.name} exists already")
        if repo is None:
            raise NotFound(f"there is no repo {branch.repo!r}")
        raise Conflict(f"branch {branch.repo}/{branch.name} changed while it was being created")

    def get_branch(self, repo: str, name: str) -> BranchRecord | None:
        found, wc = self.client.get_many([self._branch_key(repo, name), self._wc_key(repo, name)])
        return _branch(repo, name, found, wc) if found is not None else None

    def list_branches(self, repo: str) -> list[BranchRecord]:
        found = self.client.get_prefix(self._branches_prefix(repo))
        wcs = {_last(kv.key): kv for kv in self.client.get_prefix(self._wc_prefix(repo))}
        return [_branch(repo, _last(kv.key), kv, wcs.get(_last(kv.key))) for kv in found]

    def delete_branch(self, repo: str, name: str) -> None:
        self.client.txn(
            [], [delete_op(self._branch_key(repo, name)), delete_op(self._wc_key(repo, name))]
        )

    def move_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None = None,
    ) -> None:
        self._swap_head(
            repo, branch, expected, new, fence, [], [delete_op(self._wc_key(repo, branch))]
        )

    def _swap_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None,
        compares: list[Compare],
        ops: list[Op],
    ) -> None:
        """Move the head from ``expected`` to ``new`` with ``ops``, in one transaction
        that also checks ``compares``, the head key's mod revision and the fence.

        Raises:
            NotFound: no such branch. Conflict: the head is not ``expected``, the fence
                failed, or one of ``compares`` did not hold; nothing changed.
        """
        key = self._branch_key(repo, branch)
        found = self.client.get(key)
        if found is None:
            raise NotFound(f"repo {repo!r} has no branch {branch!r}")
        state = _load(found)
        if state["head"] != expected:
            raise _moved(repo, branch, state["head"], expected)
        checks = [mod_revision_equals(key, found.mod_revision), *compares]
        if fence is not None:
            checks.append(create_revision_equals(fence.key, fence.revision))
        head = put_op(key, _dump({"head": new, "created": state["created"]}))
        if self.client.txn(checks, [head, *ops]):
            return
        now, *lock = self.client.get_many([key] if fence is None else [key, fence.key])
        if fence is not None and (lock[0] is None or lock[0].create_revision != fence.revision):
            raise Conflict(
                f"the write lock of {repo}/{branch} is no longer held by this node (another "
                "node holds it now, or its lease expired): the head move was fenced off"
            )
        if now is None:
            raise NotFound(f"repo {repo!r} has no branch {branch!r}")
        if _load(now)["head"] != expected:
            raise _moved(repo, branch, _load(now)["head"], expected)
        raise Conflict(f"branch {repo}/{branch} changed while its head was being moved")

    def set_clean_generation(
        self, repo: str, branch: str, generation: int, base: str | None
    ) -> None:
        stored = self.client.txn(
            [key_exists(self._branch_key(repo, branch))],
            [put_op(self._wc_key(repo, branch), _wc_json(generation, base))],
        )
        if not stored:
            raise NotFound(f"repo {repo!r} has no branch {branch!r}")

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        key = self._repo_key(repo)
        for _ in range(CAS_ATTEMPTS):
            found = self.client.get(key)
            if found is None:
                raise NotFound(f"there is no repo {repo!r}")
            record = _repo(repo, found)
            if record.placement != tuple(expected):
                return False
            updated = _repo_json(replace(record, placement=tuple(new)))
            if self.client.txn(
                [mod_revision_equals(key, found.mod_revision)], [put_op(key, updated)]
            ):
                return True
        raise Busy(f"the placement of repo {repo!r} kept changing; try again")

    def add_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._update_commit(
            repo, commit_id, lambda c: replace(c, holders=tuple(sorted({*c.holders, node})))
        )

    def remove_holder(self, repo: str, commit_id: str, node: str) -> None:
        self._update_commit(
            repo, commit_id, lambda c: replace(c, holders=tuple(h for h in c.holders if h != node))
        )

    def _update_commit(
        self, repo: str, commit_id: str, change: Callable[[CommitRecord], CommitRecord]
    ) -> None:
        """Read-modify-write a commit record with a compare-and-swap on its mod revision."""
        key = self._commit_key(repo, commit_id)
        for _ in range(CAS_ATTEMPTS):
            found = self.client.get(key)
            if found is None:
                raise NotFound(f"repo {repo!r} has no commit {commit_id}")
            record = _commit(repo, found)
            updated = change(record)
            if updated == record:
                return
            if self.client.txn(
                [mod_revision_equals(key, found.mod_revision)], [put_op(key, _commit_json(updated))]
            ):
                return
        raise Busy(f"the record of commit {commit_id} kept changing; try again")

    # commits

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        found = self.client.get(self._commit_key(repo, commit_id))
        return _commit(repo, found) if found is not None else None

    def find_commit_ids(self, repo: str, prefix: str) -> list[str]:
        found = self.client.get_prefix(
            self._commits_prefix(repo) + prefix, limit=FIND_LIMIT, keys_only=True
        )
        return [_last(kv.key) for kv in found]

    def list_commits(self, repo: str) -> list[CommitRecord]:
        commits = [_commit(repo, kv) for kv in self.client.get_prefix(self._commits_prefix(repo))]
        commits.sort(key=lambda c: c.id)
        commits.sort(key=lambda c: c.created, reverse=True)
        return commits

    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Mark commits pruned: in one transaction for up to ``MAX_TXN_OPS`` of them,
        else in batches; an interruption leaves some marked, which is safe: gc marks
        before it deletes, and start-up deletes the snapshots of marked commits."""
        keys = [self._commit_key(repo, c) for c in dict.fromkeys(commit_ids)]
        for start in range(0, len(keys), MAX_TXN_OPS):
            self._mark_batch(repo, keys[start : start + MAX_TXN_OPS])

    def _mark_batch(self, repo: str, keys: list[str]) -> None:
        for _ in range(CAS_ATTEMPTS):
            found = [(kv, _commit(repo, kv)) for kv in self.client.get_many(keys) if kv is not None]
            todo = [(kv, c) for kv, c in found if not c.pruned]
            if not todo:
                return
            compares = [mod_revision_equals(kv.key, kv.mod_revision) for kv, _ in todo]
            ops = [put_op(kv.key, _commit_json(replace(c, pruned=True))) for kv, c in todo]
            if self.client.txn(compares, ops):
                return
        raise Busy(f"commits of repo {repo!r} kept changing while being marked pruned")

    def count_commits(self, repo: str) -> int:
        return self.client.count_prefix(self._commits_prefix(repo))

    def begin_commit(self, intent: CommitIntent) -> None:
        self.client.put(self._intent_key(intent.commit), _intent_json(intent))

    def finish_commit(
        self, intent: CommitIntent, generation: int, fence: Fence | None = None
    ) -> None:
        c = intent.commit
        commit_key = self._commit_key(c.repo, c.id)
        ops = [
            put_op(commit_key, _commit_json(c)),
            put_op(self._wc_key(c.repo, c.branch), _wc_json(generation, c.id)),
            delete_op(self._intent_key(c)),
        ]
        if intent.mount_id is not None:
            ops.append(delete_op(self._mount_key(intent.mount_id)))
        try:
            self._swap_head(
                c.repo,
                c.branch,
                c.parent,
                c.id,
                fence,
                [create_revision_equals(commit_key, 0)],
                ops,
            )
        except Conflict:
            if self.client.get(commit_key) is not None:
                raise Conflict(f"commit {c.id} of repo {c.repo!r} is recorded already") from None
            raise

    def abandon_commit(self, intent: CommitIntent) -> None:
        self.client.delete(self._intent_key(intent.commit))

    def list_intents(self) -> list[CommitIntent]:
        intents = [_intent(kv) for kv in self.client.get_prefix(self._intents_prefix())]
        intents.sort(key=lambda i: (i.commit.created, i.commit.id))
        return intents

    # mounts

    def add_mount(self, mount: MountRecord) -> MountRecord:
        key = self._mount_key(mount.id)
        for _ in range(CAS_ATTEMPTS):
            if self.client.txn([create_revision_equals(key, 0)], [put_op(key, _mount_json(mount))]):
                return mount
            found = self.client.get(key)
            if found is not None:
                return _mount(found)
        raise Busy(f"the record of mount {mount.id} kept changing; try again")

    def get_mount(self, mount_id: str) -> MountRecord | None:
        found = self.client.get(self._mount_key(mount_id))
        return _mount(found) if found is not None else None

    def list_mounts(self, repo: str | None = None) -> list[MountRecord]:
        mounts = [
            m
            for m in self._local_records(f"{self._local}mounts/", _mount)
            if repo is None or m.repo == repo
        ]
        mounts.sort(key=lambda m: (m.created, m.id))
        return mounts

    def delete_mount(self, mount_id: str) -> None:
        self.client.delete(self._mount_key(mount_id))

    def use_mount(self, mount_id: str) -> MountRecord | None:
        return self._count_use(mount_id, +1)

    def unuse_mount(self, mount_id: str) -> bool:
        return self._count_use(mount_id, -1) is not None

    def _count_use(self, mount_id: str, step: int) -> MountRecord | None:
        """Add ``step`` to a mount's uses, never below one; the updated record, or None
        when it is unknown or (``step`` < 0) used once."""
        key = self._mount_key(mount_id)
        for _ in range(CAS_ATTEMPTS):
            found = self.client.get(key)
            if found is None:
                return None
            mount = _mount(found)
            if mount.uses + step < 1:
                return None
            updated = replace(mount, uses=mount.uses + step)
            if self.client.txn(
                [mod_revision_equals(key, found.mod_revision)], [put_op(key, _mount_json(updated))]
            ):
                return updated
        raise Busy(f"the record of mount {mount_id} kept changing; try again")

    # Docker volume names

    def add_volume(self, volume: VolumeRecord) -> None:
        key = self._volume_key(volume.name)
        self.client.txn([create_revision_equals(key, 0)], [put_op(key, _volume_json(volume))])

    def get_volume(self, name: str) -> VolumeRecord | None:
        found = self.client.get(self._volume_key(name))
        return _volume(found) if found is not None else None

    def list_volumes(self) -> list[VolumeRecord]:
        volumes = self._local_records(f"{self._local}volumes/", _volume)
        return sorted(volumes, key=lambda v: v.name)

    def delete_volume(self, name: str) -> None:
        self.client.delete(self._volume_key(name))

    def _local_records(self, prefix: str, decode: Callable[[KeyValue], T]) -> list[T]:
        return [decode(kv) for kv in self.client.get_prefix(prefix)]

    # documents

    def _document_key(self, kind: str, name: str) -> str:
        return f"{self.prefix}/docs/{kind}/{quote(name, safe='')}"

    def put_document(self, kind: str, name: str, body: str, expected: int | None) -> int:
        key = self._document_key(kind, name)
        guard = (
            create_revision_equals(key, 0) if expected is None else version_equals(key, expected)
        )
        if self.client.txn([guard], [put_op(key, body)]):
            found = self.client.get(key)
            return found.version if found is not None else (expected or 0) + 1
        found = self.client.get(key)
        if found is None:
            raise Conflict(f"there is no {kind} {name!r} (it was deleted)")
        if expected is None:
            raise Conflict(f"{kind} {name!r} exists already")
        raise Conflict(f"{kind} {name!r} is at version {found.version}, not {expected}")

    def get_document(self, kind: str, name: str) -> tuple[str, int] | None:
        found = self.client.get(self._document_key(kind, name))
        return None if found is None else (found.value.decode(), found.version)

    def list_documents(self, kind: str) -> list[tuple[str, str, int]]:
        prefix = f"{self.prefix}/docs/{kind}/"
        return [
            (unquote(kv.key[len(prefix) :]), kv.value.decode(), kv.version)
            for kv in self.client.get_prefix(prefix)
        ]

    def delete_document(self, kind: str, name: str) -> None:
        self.client.delete(self._document_key(kind, name))

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever made it."""


# JSON values


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _load(kv: KeyValue) -> dict[str, Any]:
    value = json.loads(kv.value)
    if not isinstance(value, dict):
        raise ValueError(f"etcd key {kv.key} holds {kv.text!r}, not a JSON object")
    return value


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _last(key: str) -> str:
    return unquote(key.rsplit("/", 1)[-1])


def _check_component(name: str, what: str) -> str:
    """A key component: it must not be empty or contain "/" (which would make one record
    look like a record of another repo or branch)."""
    if not name or "/" in name:
        raise InvalidName(f"{what} {name!r} cannot be stored: it is empty or contains '/'")
    return name


def _moved(repo: str, branch: str, head: str | None, expected: str | None) -> Conflict:
    return Conflict(f"branch {repo}/{branch} moved: its head is {head}, not {expected}")


def _repo_json(repo: RepoRecord) -> str:
    return _dump(
        {
            "created": rfc3339(repo.created),
            "description": repo.description,
            "replicas": repo.replicas,
            "placement": list(repo.placement),
        }
    )


def _repo(name: str, kv: KeyValue) -> RepoRecord:
    value = _load(kv)
    return RepoRecord(
        name=name,
        created=_time(value["created"]),
        description=value.get("description", ""),
        replicas=int(value.get("replicas", 1)),
        placement=tuple(value.get("placement", ())),
    )


def _branch_json(head: str | None, created: datetime) -> str:
    return _dump({"head": head, "created": rfc3339(created)})


def _wc_json(generation: int | None, base: str | None) -> str:
    return _dump({"generation": generation, "base": base})


def _branch(repo: str, name: str, kv: KeyValue, wc: KeyValue | None) -> BranchRecord:
    value = _load(kv)
    state = _load(wc) if wc is not None else {}
    return BranchRecord(
        repo=repo,
        name=name,
        head=value["head"],
        created=_time(value["created"]),
        clean_generation=state.get("generation"),
        working_base=state.get("base"),
    )


def _commit_fields(c: CommitRecord) -> dict[str, Any]:
    return {
        "id": c.id,
        "branch": c.branch,
        "parent": c.parent,
        "created": rfc3339(c.created),
        "message": c.message,
        "origin": c.origin,
        "pruned": c.pruned,
        "holders": sorted(c.holders),
        "provenance": list(c.provenance),
        "job": c.job,
        "merge_parents": list(c.merge_parents),
    }


def _commit_json(c: CommitRecord) -> str:
    return _dump(_commit_fields(c))


def _commit_from(repo: str, value: dict[str, Any]) -> CommitRecord:
    return CommitRecord(
        id=value["id"],
        repo=repo,
        branch=value["branch"],
        parent=value["parent"],
        created=_time(value["created"]),
        message=value["message"],
        origin=value["origin"],
        pruned=bool(value.get("pruned", False)),
        holders=tuple(value.get("holders", ())),
        provenance=tuple(value.get("provenance", ())),
        job=value.get("job"),
        merge_parents=tuple(value.get("merge_parents", ())),
    )


def _commit(repo: str, kv: KeyValue) -> CommitRecord:
    return _commit_from(repo, _load(kv))


def _intent_json(intent: CommitIntent) -> str:
    return _dump(
        {
            "repo": intent.commit.repo,
            "commit": _commit_fields(intent.commit),
            "mount_id": intent.mount_id,
        }
    )


def _intent(kv: KeyValue) -> CommitIntent:
    value = _load(kv)
    return CommitIntent(_commit_from(value["repo"], value["commit"]), value["mount_id"])


def _mount_json(mount: MountRecord) -> str:
    return _dump(
        {
            "id": mount.id,
            "volume": mount.volume,
            "repo": mount.repo,
            "branch": mount.branch,
            "commit": mount.commit,
            "created": rfc3339(mount.created),
            "uses": mount.uses,
        }
    )


def _mount(kv: KeyValue) -> MountRecord:
    value = _load(kv)
    return MountRecord(
        id=value["id"],
        volume=value["volume"],
        repo=value["repo"],
        branch=value["branch"],
        commit=value["commit"],
        created=_time(value["created"]),
        uses=int(value.get("uses", 1)),
    )


def _volume_json(volume: VolumeRecord) -> str:
    return _dump({"name": volume.name, "repo": volume.repo, "created": rfc3339(volume.created)})


def _volume(kv: KeyValue) -> VolumeRecord:
    value = _load(kv)
    return VolumeRecord(name=value["name"], repo=value["repo"], created=_time(value["created"]))
