"""Cluster-wide branch write locks: one writer per branch (DESIGN.md invariant 5).

A lock is the key ``{prefix}/locks/<repo>/<branch>``, created in a transaction only when
absent and bound to the holder's lease, so it dies with the holder's lease. Holding it
gives a ``Fence`` (the key and its create revision); every head move made under the lock
carries the fence, and the metadata store moves the head only while that exact lock
still exists. A holder that was paused past its lease therefore cannot move a head,
even though it still believes it holds the lock.
"""

from __future__ import annotations

import json
import logging
import threading

from pfs_volume.cluster.membership import NodeRegistry
from pfs_volume.errors import Conflict
from pfs_volume.meta import Fence
from pfs_volume.meta.etcd_client import (
    EtcdClient,
    create_revision_equals,
    delete_op,
    mod_revision_equals,
    put_op,
)

log = logging.getLogger(__name__)


class BranchLocks:
    """This node's view of the branch write locks it holds.

    Args:
        client: the etcd client.
        registry: this node's registration (its lease binds the locks).
        prefix: the cluster's etcd key prefix.
    """

    def __init__(self, client: EtcdClient, registry: NodeRegistry, prefix: str = "/pfs") -> None:
        self.client = client
        self.registry = registry
        self.prefix = prefix
        self._held: dict[tuple[str, str], Fence] = {}
        self._guard = threading.Lock()

    def key(self, repo: str, branch: str) -> str:
        """The etcd key of a branch's lock."""
        return f"{self.prefix}/locks/{repo}/{branch}"

    def held(self, repo: str, branch: str) -> Fence | None:
        """The fence this node got for the branch, or None. It may be stale (the lease
        expired since): a head move with it is then refused by the store."""
        with self._guard:
            return self._held.get((repo, branch))

    def acquire(self, repo: str, branch: str) -> Fence:
        """Take the branch's lock for this node, or return the one it holds.

        A lock left by this node's previous process (same node id, another lease) is
        taken over: the state dir's lock guarantees that process is gone.

        Raises:
            Conflict: another node holds it (the message names it).
            Unavailable: etcd is unreachable.
        """
        fence = self.held(repo, branch)
        if fence is not None:
            return fence
        key = self.key(repo, branch)
        lease = self.registry.lease
        value = json.dumps({"node": self.registry.node_id, "lease": lease})
        created = self.client.txn(
            compare=[create_revision_equals(key, 0)],
            success=[put_op(key, value, lease=lease)],
        )
        if not created:
            current = self.client.get(key)
            if current is None:
                return self.acquire(repo, branch)
            holder = json.loads(current.value)
            if holder.get("node") != self.registry.node_id:
                raise Conflict(
                    f"branch {repo}/{branch} is being written on node {holder.get('node')} "
                    f"({self.registry.address_of(str(holder.get('node'))) or 'address unknown'}"
                    "); a branch has one writer in the cluster: mount it read-only "
                    f"({repo}@{branch}), use another branch, or wait until it is unmounted "
                    "there"
                )
            # The old process is gone (the state dir's flock says so), so rebinding its
            # key to this lease keeps its create revision without risk.
            if holder.get("lease") != lease and not self.client.txn(
                compare=[mod_revision_equals(key, current.mod_revision)],
                success=[put_op(key, value, lease=lease)],
            ):
                return self.acquire(repo, branch)
            log.info(
                "repo=%s branch=%s lock taken over from this node's previous run", repo, branch
            )
        kv = self.client.get(key)
        if kv is None or json.loads(kv.value).get("lease") != lease:
            raise Conflict(f"branch {repo}/{branch}: the write lock was lost while being taken")
        fence = Fence(key=key, revision=kv.create_revision)
        with self._guard:
            self._held[(repo, branch)] = fence
        log.info(
            "repo=%s branch=%s write lock taken (revision %d)", repo, branch, kv.create_revision
        )
        return fence

    def release(self, repo: str, branch: str) -> None:
        """Give the lock back, if it is still this node's: the one it got, or one a lost
        answer left bound to this node. A failed release is kept for a retry
        (``held_keys`` lists it again)."""
        key = self.key(repo, branch)
        with self._guard:
            fence = self._held.get((repo, branch))
        if fence is None:
            current = self.client.get(key)
            if current is None or json.loads(current.value).get("node") != self.registry.node_id:
                return
            fence = Fence(key=key, revision=current.create_revision)
        self.client.txn(
            compare=[create_revision_equals(fence.key, fence.revision)],
            success=[delete_op(fence.key)],
        )
        with self._guard:
            if self._held.get((repo, branch)) == fence:
                del self._held[(repo, branch)]
        log.info("repo=%s branch=%s write lock released", repo, branch)

    def forget_all(self) -> None:
        """Forget every fence (this node's lease expired, so its locks are gone): the
        next write acquires anew, and any head move under an old fence is refused."""
        with self._guard:
            lost = list(self._held)
            self._held.clear()
        for repo, branch in lost:
            log.warning("repo=%s branch=%s write lock lost with the node's lease", repo, branch)

    def held_here(self) -> list[tuple[str, str]]:
        """(repo, branch) of every lock this node knows it holds (no etcd read)."""
        with self._guard:
            return sorted(self._held)

    def held_keys(self) -> list[tuple[str, str]]:
        """(repo, branch) of every lock this node holds, including ones etcd binds to
        this node that it lost track of (a release or an acquire whose answer was lost)."""
        with self._guard:
            keys = set(self._held)
        for kv in self.client.get_prefix(f"{self.prefix}/locks/"):
            if json.loads(kv.value).get("node") == self.registry.node_id:
                repo, branch = kv.key[len(self.prefix) + len("/locks/") :].split("/", 1)
                keys.add((repo, branch))
        return sorted(keys)

    def holder(self, repo: str, branch: str) -> str | None:
        """The node that holds the branch's lock now, or None."""
        kv = self.client.get(self.key(repo, branch))
        return None if kv is None else str(json.loads(kv.value).get("node"))
