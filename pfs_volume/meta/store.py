"""The MetadataStore interface: everything pfs remembers besides the data itself.

Two backends implement it: embedded SQLite (one host, the default) and etcd (a
cluster). Each method is atomic on its own; the ones that must change several records at
once (``finish_commit``, ``delete_repo``) say so and do it in one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from datetime import datetime

from pfs_volume.meta.change_log import StoreChanges
from pfs_volume.meta.records import (
    BranchRecord,
    CommitIntent,
    CommitLinks,
    CommitRecord,
    Fence,
    MountRecord,
    RepoRecord,
    RepoSize,
    VolumeRecord,
)


class MetadataStore(ABC):
    """Repos, branches, commits, in-flight commits, mounts and Docker volume names."""

    # repos

    @abstractmethod
    def create_repo(self, repo: RepoRecord, default_branch: BranchRecord) -> None:
        """In one transaction: add a repo and its default branch. Raises Conflict when the
        name is taken."""

    @abstractmethod
    def import_repo(
        self, repo: RepoRecord, branches: list[BranchRecord], commits: list[CommitRecord]
    ) -> None:
        """In one transaction: add a repo with its branches and commits (an import).
        Raises Conflict when the name is taken."""

    @abstractmethod
    def get_repo(self, name: str) -> RepoRecord | None:
        """The repo called ``name``, or None."""

    @abstractmethod
    def list_repos(self) -> list[RepoRecord]:
        """Every repo, by name."""

    @abstractmethod
    def delete_repo(self, name: str) -> None:
        """In one transaction: drop the repo and every record under it, and leave a
        tombstone so that start-up finishes deleting its data if a crash interrupts."""

    @abstractmethod
    def list_deleted_repos(self) -> list[str]:
        """Repos whose records are gone but whose data may still be on disk."""

    @abstractmethod
    def repo_deleted(self, name: str) -> bool:
        """True when a repo of this name was deleted (through any node of a cluster) and
        not created again: positive evidence, unlike a missing record."""

    @abstractmethod
    def forget_deleted_repo(self, name: str) -> None:
        """Drop a tombstone once the repo's data is gone."""

    # branches

    @abstractmethod
    def create_branch(self, branch: BranchRecord) -> None:
        """Add a branch. Raises Conflict when it exists."""

    @abstractmethod
    def get_branch(self, repo: str, name: str) -> BranchRecord | None:
        """The branch, or None."""

    @abstractmethod
    def get_repo_branch(
        self, repo: str, name: str
    ) -> tuple[RepoRecord | None, BranchRecord | None]:
        """The repo and one of its branches (each None when absent), read together: one
        round trip in etcd, where a history walk starts with both."""

    @abstractmethod
    def list_branches(self, repo: str) -> list[BranchRecord]:
        """The repo's branches, by name."""

    @abstractmethod
    def delete_branch(self, repo: str, name: str) -> None:
        """Drop a branch record (its commits stay). No error when it is unknown."""

    @abstractmethod
    def move_head(
        self,
        repo: str,
        branch: str,
        expected: str | None,
        new: str,
        fence: Fence | None = None,
    ) -> None:
        """Compare-and-swap the branch head from ``expected`` to ``new``; this node's
        working copy state is forgotten (clean generation and base unset).

        With a ``fence``, the swap also requires the fence's lock key to exist with the
        fence's create revision, in the same transaction (a backend without cluster locks
        ignores it).

        Raises:
            Conflict: when the head is not ``expected``, or the fence's lock is gone or
                held anew; nothing changes.
        """

    @abstractmethod
    def set_clean_generation(
        self, repo: str, branch: str, generation: int, base: str | None
    ) -> None:
        """Record this node's working copy generation at which it equals commit ``base``
        (None: the empty tree). Raises NotFound for an unknown branch."""

    @abstractmethod
    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        """Compare-and-swap the repo's placement; True when it was ``expected`` and is now
        ``new``, False (nothing changed) otherwise. Raises NotFound for an unknown repo."""

    @abstractmethod
    def add_holder(self, repo: str, commit_id: str, node: str) -> None:
        """Add ``node`` to the commit's holders (atomic, idempotent). Raises NotFound."""

    @abstractmethod
    def remove_holder(self, repo: str, commit_id: str, node: str) -> None:
        """Drop ``node`` from the commit's holders (atomic, idempotent). Raises NotFound."""

    # commits

    @abstractmethod
    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        """The commit with this exact id, or None."""

    @abstractmethod
    def get_commits(self, repo: str, commit_ids: list[str]) -> list[CommitRecord | None]:
        """The commits with these exact ids, in their order (None for an unknown one), read
        in as few round trips as the backend can (etcd: one per ``MAX_TXN_OPS`` ids)."""

    @abstractmethod
    def commit_links(self, repo: str, after: tuple[datetime, str], limit: int) -> list[CommitLinks]:
        """A page of the repo's commits in log order (created newest first, then by id),
        those strictly after the position ``after`` = (created, id), at most ``limit``:
        each commit's id, time and parents. One range read (etcd: of the ``log/`` index,
        which commits written before that index existed are not in: a walk must read a
        parent it does not find in a page by ``get_commits``)."""

    @abstractmethod
    def find_commit_ids(self, repo: str, prefix: str) -> list[str]:
        """Ids of the repo's commits that start with ``prefix`` (at most a few)."""

    @abstractmethod
    def list_commits(self, repo: str) -> list[CommitRecord]:
        """Every commit of the repo, newest first."""

    @abstractmethod
    def mark_pruned(self, repo: str, commit_ids: list[str]) -> None:
        """Mark commits as pruned (their snapshots are about to go), in one transaction."""

    # sizes: what each commit wrote, and a running total per repo

    @abstractmethod
    def record_commit_size(self, repo: str, commit_id: str, size: int) -> bool:
        """In one transaction: set the size of a commit (the bytes it wrote, measured once
        after it was made) and add it to the repo's running total. False, and nothing
        changed, for an unknown or pruned commit or one measured already. A repo made
        before sizes were kept has no total: only the commit's size is set."""

    @abstractmethod
    def commit_size(self, repo: str, commit_id: str) -> int | None:
        """The commit's recorded size, or None (not measured)."""

    @abstractmethod
    def commit_sizes(self, repo: str) -> dict[str, int]:
        """Every recorded size of the repo's commits, by commit id (a commit not in it is
        not measured), read at once: one range read (etcd: of ``commit_sizes/<repo>/``,
        paged as every range), never one per commit."""

    @abstractmethod
    def repo_size(self, repo: str) -> RepoSize | None:
        """The repo's running total; None for an unknown repo or one made before sizes
        were kept. ``create_repo`` and ``import_repo`` start it, ``mark_pruned`` takes
        pruned commits out of it in the same transaction, ``delete_repo`` drops it."""

    @abstractmethod
    def count_commits(self, repo: str) -> int:
        """How many commits the repo has."""

    @abstractmethod
    def begin_commit(self, intent: CommitIntent) -> None:
        """Record a commit about to be snapshotted (it is not visible yet)."""

    @abstractmethod
    def finish_commit(
        self, intent: CommitIntent, generation: int, fence: Fence | None = None
    ) -> None:
        """In one transaction: write the commit record (holders as in ``intent.commit``),
        move the branch head from ``intent.commit.parent`` to the commit
        (compare-and-swap, fenced as in ``move_head``), set this node's clean generation
        to ``generation`` with the commit as base, drop the intent and the mount it
        releases.

        Raises:
            Conflict: when the head is no longer ``intent.commit.parent`` or the fence
                failed; nothing changes.
        """

    @abstractmethod
    def abandon_commit(self, intent: CommitIntent) -> None:
        """Drop an intent whose commit will not be made."""

    @abstractmethod
    def list_intents(self) -> list[CommitIntent]:
        """Commits begun and neither finished nor abandoned (only after a crash)."""

    # mounts

    @abstractmethod
    def add_mount(self, mount: MountRecord) -> MountRecord:
        """Record a mount; if its id is recorded already, return that record unchanged."""

    @abstractmethod
    def get_mount(self, mount_id: str) -> MountRecord | None:
        """The mount with this Docker mount ID, or None."""

    @abstractmethod
    def list_mounts(self, repo: str | None = None) -> list[MountRecord]:
        """Every mount, or those of one repo, oldest first."""

    @abstractmethod
    def delete_mount(self, mount_id: str) -> None:
        """Forget a mount (no error when it is unknown)."""

    @abstractmethod
    def use_mount(self, mount_id: str) -> MountRecord | None:
        """Count one more use of a recorded mount (Docker's Mount of an ID it mounted
        already); the record as it is now, or None when there is no such mount."""

    @abstractmethod
    def unuse_mount(self, mount_id: str) -> bool:
        """Count one use less of a mount used more than once; False (and nothing changed)
        when it is used once or unknown: then its Unmount releases it."""

    # Docker volume names

    @abstractmethod
    def add_volume(self, volume: VolumeRecord) -> None:
        """Remember a Docker volume name (no error when known already)."""

    @abstractmethod
    def get_volume(self, name: str) -> VolumeRecord | None:
        """The remembered volume name, or None."""

    @abstractmethod
    def list_volumes(self) -> list[VolumeRecord]:
        """Every remembered volume name."""

    @abstractmethod
    def delete_volume(self, name: str) -> None:
        """Forget a Docker volume name (no error when it is unknown)."""

    # documents (pipelines, jobs): JSON bodies under a kind and a name

    @abstractmethod
    def put_document(self, kind: str, name: str, body: str, expected: int | None) -> int:
        """Compare-and-swap a document: write ``body`` if its version is ``expected`` (None:
        it must not exist yet); the new version.

        Raises:
            Conflict: the document is not at ``expected``; nothing changes.
        """

    @abstractmethod
    def get_document(self, kind: str, name: str) -> tuple[str, int] | None:
        """A document's body and version, or None."""

    @abstractmethod
    def list_documents(self, kind: str) -> list[tuple[str, str, int]]:
        """Every document of a kind as (name, body, version), by name."""

    @abstractmethod
    def delete_document(self, kind: str, name: str) -> None:
        """Drop a document (no error when it is unknown)."""

    # changes

    @abstractmethod
    def change_token(self) -> Hashable:
        """A value that differs after any write committed since it was read that can
        change what List shows, by this process or (a cluster) any node: equal tokens mean
        no such write in between (a cluster's membership heartbeats may leave it as it
        is). A token never comes back once it moved. Read it before reading what it
        guards. Raises Unavailable, StorageError."""

    def changed_since(self, cursor: Hashable | None) -> StoreChanges:
        """What changed that List shows since ``cursor`` (an earlier answer's, or None),
        and a cursor for the next call: which repos' records (repo, branches, commits and
        their holders), and whether the volume names. Read it before reading what it
        guards, as ``change_token``. This default knows no repos: any change is all.
        Raises Unavailable, StorageError."""
        token = self.change_token()
        if cursor is not None and cursor == token:
            return StoreChanges(token, frozenset(), frozenset())
        return StoreChanges(token, None, None)

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources."""
