"""The seam between the commit graph and the cluster: what repos/ needs from the cluster
(``Coordinator``, with ``SingleHost`` the one-node answer) and what the cluster's repair
loop needs from this node's commit graph (``Maintenance``). repos/ never imports
cluster/: the cluster implements ``Coordinator`` and is handed a ``Maintenance``."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from pfs_volume.errors import InvalidRequest, NotFound
from pfs_volume.meta import CommitRecord, Fence


class Placement(NamedTuple):
    """Where a new repo's commits are kept."""

    replicas: int
    """How many copies of each commit the repo wants."""
    nodes: tuple[str, ...]
    """The nodes chosen to hold them (none on a single host)."""


class Coordinator(Protocol):
    """What the commit graph needs from the cluster: placement, branch write locks,
    moving snapshots between nodes. ``SingleHost`` is the one-node answer; the cluster
    package implements it over etcd and the node API."""

    node_id: str

    def place(self, repo: str, replicas: int | None) -> Placement:
        """The replica count and replica set of a new repo. Raises InvalidRequest."""

    def acquire(self, repo: str, branch: str) -> Fence | None:
        """Take (or return the held) cluster-wide write lock of a branch. Raises Conflict
        naming the node that holds it, Unavailable."""

    def release(self, repo: str, branch: str) -> None:
        """Give a branch's write lock back."""

    def fetch(self, repo: str, commit_id: str) -> None:
        """Bring a commit's snapshot into this node's pool. Raises NotFound, Unavailable."""

    def committed(self, commit: CommitRecord) -> None:
        """A commit was made on this node (replicate it, in the background)."""


class Maintenance(Protocol):
    """The node maintenance the cluster's repair loop and replicator run on this pool."""

    def release_idle_locks(self, held: list[tuple[str, str]]) -> None:
        """Give back the write locks among ``held`` (repo, branch) that nothing here
        uses any more."""

    def purge_deleted_repos(self) -> list[str]:
        """Remove this pool's data of repos deleted through another node; their names."""

    def drop_pruned_copies(self, repo: str) -> list[str]:
        """Delete this pool's snapshots of commits gc pruned; their ids."""

    def drain_pending(self) -> list[str]:
        """Delete the pruned snapshots that could not be deleted earlier; their ids.
        Never raises."""


class SingleHost:
    """The coordinator of a node on its own: one copy, no locks beyond the process's."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id

    def place(self, repo: str, replicas: int | None) -> Placement:
        """One copy, on this host. Raises InvalidRequest for more."""
        if replicas is not None and (isinstance(replicas, bool) or replicas != 1):
            raise InvalidRequest(
                f"repo {repo!r}: {replicas} replicas need a cluster (pfs serve --etcd ...); "
                "a single host keeps 1 copy"
            )
        return Placement(1, ())

    def acquire(self, repo: str, branch: str) -> Fence | None:
        """No cluster lock: the branch's process-local lock is the only writer."""
        return None

    def release(self, repo: str, branch: str) -> None:
        """Nothing to give back."""

    def fetch(self, repo: str, commit_id: str) -> None:
        """There is nowhere to fetch from. Raises NotFound."""
        raise NotFound(
            f"commit {commit_id} of repo {repo} has no copy in this node's pool that its "
            "record lists as held here, and a single host has nowhere to fetch one from"
        )

    def committed(self, commit: CommitRecord) -> None:
        """Nothing to replicate."""
