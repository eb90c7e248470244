"""VolumeService: Docker's volume calls, mount records, and commit on the last unmount.

A name resolves to a *target*: a branch's writable working copy, or a commit's read-only
snapshot (the table in DESIGN.md, "The volume name"). Every Docker mount is recorded
durably by its mount ID before the path is handed to Docker, so an Unmount that arrives
after a daemon restart still finds it and still commits. Several mounts of one branch
share its working copy; the last one to go commits what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from pfs_volume.errors import (
    Busy,
    Conflict,
    InUse,
    InvalidRequest,
    LeaseLost,
    NotFound,
    PfsError,
    PoolFull,
    Unavailable,
)
from pfs_volume.meta import MetadataStore, MountRecord, VolumeRecord, rfc3339, utcnow
from pfs_volume.names import VolumeName
from pfs_volume.repos import RepoService
from pfs_volume.volumes.kept_listing import KeptListing, PoolChanges
from pfs_volume.volumes.listing import VolumeInfo, mountpoints
from pfs_volume.volumes.targets import Target, VolumeTargets

log = logging.getLogger(__name__)

SCOPE = "local"
"""Docker's volume scope: each node serves its own pool (the cluster changes this)."""
UNMOUNT_ORIGIN = "unmount"


class VolumeService:
    """The Docker-facing semantics of pfs volumes.

    Args:
        repos: the commit graph service.
        store: the metadata store (mount records and volume names live there).
        prefix: the driver's name prefix, e.g. ``"pfs"``; names under ``PREFIX/`` are
            claimed even before Docker created them.
        clock: returns the current UTC time.
        pool_changes: the pool's changes (``BtrfsPool.changed_paths``): with them,
            List's answer is kept and brought up to date by repo (``kept_listing``);
            without, worked out whole on every call.
    """

    def __init__(
        self,
        repos: RepoService,
        store: MetadataStore,
        prefix: str,
        clock: Callable[[], datetime] = utcnow,
        pool_changes: PoolChanges | None = None,
    ) -> None:
        self.repos = repos
        self.store = store
        self.prefix = prefix
        self.targets = VolumeTargets(repos, prefix)
        self.clock = clock
        self.listing = KeptListing(
            store,
            lambda records: mountpoints(repos, store, prefix, records),
            self.parse,
            pool_changes,
            repos.parts_at,
        )
        self.on_unmatched_unmount: Callable[[], None] | None = None
        """Called when an Unmount names no recorded mount (the daemon asks for a
        reconciliation pass: a record may be left that no Unmount will ever name)."""

    def parse(self, name: str) -> VolumeName:
        """Parse a Docker volume name with this driver's prefix. Raises InvalidName."""
        return self.targets.parse(name)

    def resolve(self, name: str) -> Target:
        """What ``name`` means now, without creating anything. See
        ``VolumeTargets.resolve``."""
        return self.targets.resolve(name)

    def path_of(self, target: Target) -> Path:
        """Where the target lives in the pool."""
        return self.targets.path_of(target)

    # the Docker volume driver

    def create(self, name: str, options: Mapping[str, Any]) -> None:
        """Docker's Create: check the name, make its repo and branch, remember the name.

        Raises:
            InvalidRequest: for any option (pfs takes none yet).
            InvalidName, NotFound, Conflict: as ``resolve``; Conflict also for a
                pipeline's output branch (only its jobs write there).
        """
        if options:
            raise InvalidRequest(
                f"pfs volumes take no options (-o); got {', '.join(sorted(options))}"
            )
        self._mount_target(name)
        self.store.add_volume(
            VolumeRecord(name=name, repo=self.parse(name).repo, created=self.clock())
        )
        log.info("volume=%s created", name)

    def remove(self, name: str) -> None:
        """Docker's Remove: forget the volume name. Repo data is never deleted here.

        Raises:
            InUse: when a container still has this volume mounted.
        """
        mounts = [m for m in self.store.list_mounts() if m.volume == name]
        if mounts:
            raise InUse(f"volume {name} is mounted by {len(mounts)} container(s)")
        self.store.delete_volume(name)
        log.info("volume=%s forgotten (repo data kept)", name)

    def get(self, name: str) -> VolumeInfo:
        """Docker's Get: describe a known volume, or claim (create) a name under the prefix.

        Raises:
            NotFound: for a name that is neither remembered nor under the prefix (so that
                Docker asks its other drivers).
            InvalidName, Conflict: for a name under the prefix that cannot be mounted.
        """
        known = self.store.get_volume(name)
        if known is None:
            if not name.startswith(self.prefix + "/"):
                raise NotFound(
                    f"no pfs volume is called {name!r}; names under {self.prefix}/ are "
                    f"always pfs volumes, other names once created with --driver {self.prefix}"
                )
            # Docker calls Get before Create and skips Create when Get answers (and asks
            # every plugin's Get about names it does not know): claiming a name is the
            # only chance to make it, so a claimed name is created here.
            self.create(name, {})
            known = self.store.get_volume(name)
        try:
            target = self.resolve(name)
        except PfsError as exc:
            if known is None:
                raise
            return VolumeInfo(name, "", known.created, {"error": str(exc)})
        return self._info(name, target, known.created if known else None)

    def list(self) -> tuple[VolumeInfo, ...]:
        """Docker's List: every remembered volume name; the same tuple while nothing
        List shows changes, and only the changed repos' volumes worked out again after
        a write (``kept_listing``)."""
        return self.listing.answer()

    def path(self, name: str) -> str:
        """Docker's Path: where the volume is, or "" when it has not been made yet."""
        mounts = [m for m in self.store.list_mounts() if m.volume == name]
        if mounts:
            return str(self._mount_path(mounts[0]))
        return self.targets.existing_path(self.resolve(name))

    def mount(self, name: str, mount_id: str) -> Path:
        """Docker's Mount: make the target if needed, record the mount, return the path.

        Docker may send the same ID again (``docker cp`` of a running container): each
        Mount of an ID is counted, and only the last of as many Unmounts releases it.

        Raises:
            InvalidRequest: an empty mount ID, or one already used for another volume.
            InvalidName, NotFound, Conflict: as ``resolve``; Conflict also for a
                pipeline's output branch (read it at a commit instead).
            PoolFull: the pool has no space to record the mount or make the branch.
        """
        if not mount_id:
            raise InvalidRequest("the mount ID is empty; Docker sends one with every Mount")
        known = self.store.get_mount(mount_id)
        if known is not None:
            if known.volume != name:
                raise InvalidRequest(
                    f"mount ID {mount_id} is already used for volume {known.volume}"
                )
            # Docker mounts a running container's volumes again with the same ID for
            # `docker cp` and unmounts them after: count it, so that Unmount keeps the
            # container's mount.
            used = self.store.use_mount(mount_id)
            if used is not None:
                log.info("volume=%s mount=%s mounted again (%d uses)", name, mount_id, used.uses)
                return self._mount_path(used)
        with self.repos.reporting_full_pool(f"mounting {name}"):
            target, path = self._mount_target(name, record_mount=mount_id)
            self.store.add_volume(VolumeRecord(name=name, repo=target.repo, created=self.clock()))
        log.info(
            "volume=%s repo=%s branch=%s commit=%s mount=%s mounted at %s",
            name,
            target.repo,
            target.branch,
            target.commit,
            mount_id,
            path,
        )
        return path

    def unmount(self, name: str, mount_id: str) -> None:
        """Docker's Unmount: release a mount; the last one of a branch commits.

        A mount ID mounted N times is released by its Nth Unmount. An unknown mount ID is
        not an error (Docker may repeat an Unmount). Releasing a mount may use the pool's
        reserve (``SpaceReserve.freeing``); a commit never does.

        Raises:
            PoolFull: the commit met a full pool (the mount is released all the same,
                the changes stay in the working copy and show on the branch's
                ``last_commit_error``). Conflict, StorageError: the commit failed.
            Unavailable: the metadata store cannot be reached (the mount stays).
        """
        record = self.store.get_mount(mount_id)
        if record is None:
            log.info("volume=%s mount=%s unknown or released already", name, mount_id)
            self._commit_left_over(name, mount_id)
            self._unmatched()
            return
        if record.volume != name:
            raise InvalidRequest(
                f"mount ID {mount_id} belongs to volume {record.volume}, not {name}"
            )
        if self.store.unuse_mount(mount_id):
            log.info("volume=%s mount=%s still used (mounted again, by docker cp)", name, mount_id)
            return
        self._release(record)

    def _release(self, record: MountRecord) -> None:
        name, mount_id = record.volume, record.id
        if record.branch is None:
            self._release_record(mount_id)
            log.info("volume=%s mount=%s released (read-only)", name, mount_id)
            return
        try:
            self._unmount_branch(record)
        except PfsError as exc:
            # LeaseLost is an Unavailable but no outage: etcd answered that this node's
            # lease, and the branch's write lock with it, is gone; it is released below.
            if isinstance(exc, Unavailable) and not isinstance(exc, LeaseLost):
                raise  # the mount record stays; `pfs mount release` once etcd is back
            # Docker never repeats an Unmount: whatever failed (another node took the
            # branch's lock while this daemon was down, say), the mount is released and
            # the changes stay in the working copy.
            if self.store.get_mount(mount_id) is not None:
                self._release_record(mount_id)
            if isinstance(exc, PoolFull):
                raise PoolFull(
                    f"{name}: {exc}; mount {mount_id} was released and the changes stay "
                    f"in this node's working copy of {record.repo}/{record.branch}: the "
                    "next unmount of the branch commits them once there is space"
                ) from exc
            if isinstance(exc, Conflict):
                raise Conflict(
                    f"{name}: the changes were not committed; they stay in this node's "
                    f"working copy of {record.repo}/{record.branch} ({exc})"
                ) from exc
            raise

    def unmount_unnamed(self) -> None:
        """Docker's Unmount with an empty body: its plugin client retries a call after a
        connection error (pfs was restarting) by re-sending a body it already read, so
        the retry names no mount. Which one it meant is unknown; the records no container
        holds are reconciled with the engine (``pfs_volume.mount_reconciler``)."""
        log.warning(
            "an Unmount arrived with an empty body (Docker's retry after a connection "
            "error); mount records are reconciled with the engine"
        )
        self._unmatched()

    def _commit_left_over(self, name: str, mount_id: str) -> None:
        """An Unmount of a mount released before (by reconciliation, ``pfs mount release``
        or an earlier Unmount): its container may have written after that release, so the
        branch's changes are committed when no other mount holds it."""
        try:
            target = self.resolve(name)
            if target.branch is None or not target.branch_exists:
                return
            with self.repos.branch_lock(target.repo, target.branch):
                if any(m.branch == target.branch for m in self.store.list_mounts(target.repo)):
                    return  # the last of those commits
                if not self.repos.has_uncommitted_changes(target.repo, target.branch):
                    return
                log.warning(
                    "volume=%s repo=%s branch=%s mount=%s: an Unmount of a mount released "
                    "before; committing what was written since",
                    name,
                    target.repo,
                    target.branch,
                    mount_id,
                )
                self.repos.commit_working_copy(
                    target.repo,
                    target.branch,
                    message=f"auto-commit on unmount of {name} (mount {mount_id}, released before)",
                    origin=UNMOUNT_ORIGIN,
                )
        except PfsError as exc:
            log.error(
                "volume=%s mount=%s: what was written since was not committed: %s",
                name,
                mount_id,
                exc,
            )

    def _unmatched(self) -> None:
        if self.on_unmatched_unmount is not None:
            self.on_unmatched_unmount()
        elif self.store.list_mounts():
            log.warning(
                "mount reconciliation is off: a mount record may be left that no "
                "container holds; `pfs mount list --stale` shows them"
            )

    def _unmount_branch(self, record: MountRecord) -> None:
        name, mount_id = record.volume, record.id
        assert record.branch is not None
        with self.repos.branch_lock(record.repo, record.branch):
            if self.store.get_mount(mount_id) is None:
                log.info("volume=%s mount=%s released meanwhile", name, mount_id)
                return
            others = [
                m
                for m in self.store.list_mounts(record.repo)
                if m.branch == record.branch and m.id != mount_id
            ]
            if others:
                self._release_record(mount_id)
                log.info(
                    "volume=%s mount=%s released; %d other mount(s) keep branch %s/%s open",
                    name,
                    mount_id,
                    len(others),
                    record.repo,
                    record.branch,
                )
                return
            self.repos.commit_working_copy(
                record.repo,
                record.branch,
                message=f"auto-commit on last unmount of {record.volume} (mount {mount_id})",
                origin=UNMOUNT_ORIGIN,
                mount_id=mount_id,
            )

    def _release_record(self, mount_id: str) -> None:
        """Delete a mount record, with the pool's reserve if the pool is full."""
        self.repos.release_mount_record(mount_id)

    def mounts(self) -> Sequence[MountRecord]:
        """Every recorded mount, oldest first."""
        return self.store.list_mounts()

    def release(self, mount_id: str) -> None:
        """Release a mount Docker will never unmount (its container is gone), exactly as
        Docker's Unmount would: the last mount of a branch commits.

        Raises:
            NotFound: no mount has this ID.
        """
        record = self.store.get_mount(mount_id)
        if record is None:
            raise NotFound(f"there is no mount {mount_id}")
        self._release(record)

    # internals

    def _mount_target(self, name: str, record_mount: str | None = None) -> tuple[Target, Path]:
        """Resolve and materialise ``name`` under its locks; record a mount if asked.

        The repo lock makes this atomic with ``delete_repo``: a mount is never recorded for
        a repo that is being deleted, nor handed a path that is going away.
        """
        first = self.resolve(name)
        if first.commit is not None and not self.repos.snapshot_exists(first.repo, first.commit):
            # In a cluster, bring a commit here before taking any lock: a fetch takes as
            # long as the data, and nothing else of this repo should wait for it. (A
            # branch's head is fetched under the branch's write lock, once it is ours.)
            self.repos.local_commit(first.repo, first.commit)
        with ExitStack() as locks:
            if first.branch is not None:
                locks.enter_context(self.repos.branch_lock(first.repo, first.branch))
            locks.enter_context(self.repos.repo_lock(first.repo))
            target = self.resolve(name)
            if (target.repo, target.branch) != (first.repo, first.branch):
                raise Busy(f"volume {name} changed meaning while it was being mounted; retry")
            if target.branch is not None:
                # Under the branch's lock: a pipeline made at once waits, and then sees
                # this mount (``PipelineService.create``).
                self.repos.refuse_if_owned(target.repo, target.branch, "mount")
            path = self.targets.materialise(target)
            if record_mount:
                self._record(record_mount, name, target)
            return target, path

    def _record(self, mount_id: str, name: str, target: Target) -> None:
        self.store.add_mount(
            MountRecord(
                id=mount_id,
                volume=name,
                repo=target.repo,
                branch=target.branch,
                commit=target.commit,
                created=self.clock(),
            )
        )

    def _mount_path(self, mount: MountRecord) -> Path:
        return self.path_of(Target(repo=mount.repo, branch=mount.branch, commit=mount.commit))

    def _info(self, name: str, target: Target, created: datetime | None) -> VolumeInfo:
        mounts = [
            m
            for m in self.store.list_mounts(target.repo)
            if (m.branch, m.commit) == (target.branch, target.commit)
        ]
        status: dict[str, Any] = {
            "repo": target.repo,
            "writable": target.writable,
            "head": target.head,
            "mounts": len(mounts),
            "mount_ids": [m.id for m in mounts],
        }
        if target.branch is not None:
            status["branch"] = target.branch
            if not target.branch_exists:
                status["created_on_mount"] = True
            else:
                status["uncommitted_changes"] = self.repos.has_uncommitted_changes(
                    target.repo, target.branch
                )
                error = self.repos.commit_errors_of(target.repo).get(target.branch)
                if error is not None:
                    status["last_commit_error"] = error.as_json()
        else:
            status["commit"] = target.commit
        if created is not None:
            status["created"] = rfc3339(created)
        return VolumeInfo(name, self.targets.existing_path(target), created, status)
