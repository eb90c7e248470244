"""The node daemon: one state dir, one pool, one store, two sockets.

Start-up order matters for crash safety: take the state dir's lock, mount the pool, open
the store, reconcile disk and metadata, and only then accept Docker's calls.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pfs_volume.api import create_api_app
from pfs_volume.api.app import ApiServices
from pfs_volume.btrfs import BtrfsPool, PoolImage, prepare_pool
from pfs_volume.cluster import placement
from pfs_volume.config import Settings
from pfs_volume.doctor import Doctor
from pfs_volume.driver_name import change_words, served_before
from pfs_volume.errors import Conflict, PfsError, StorageError
from pfs_volume.files import FileService
from pfs_volume.history import HistoryService
from pfs_volume.history.journal import recover_merges
from pfs_volume.meta import MetadataStore, SqliteStore
from pfs_volume.mount_reconciler import ENGINE_TIMEOUT, DockerEngine, MountReconciler
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.pipelines.uses import PipelineUses
from pfs_volume.putlog import recover_puts
from pfs_volume.repos import Coordinator, RepoParts, RepoService, SingleHost, SizeMeter
from pfs_volume.repos.fsck import FsckReport
from pfs_volume.transfer import recover_imports
from pfs_volume.transport import (
    API_CONNECTIONS,
    PLUGIN_CONNECTIONS,
    UnixSocketServer,
    socket_in_use,
)
from pfs_volume.upload import STAGING_FOLDER, StagingArea
from pfs_volume.volumes import SCOPE, VolumeService
from plugin import create_plugin_app

if TYPE_CHECKING:
    from pfs_volume.cluster.membership import NodeInfo
    from pfs_volume.daemon_cluster import Cluster

log = logging.getLogger(__name__)

DOCKER_TIMEOUT = 60
"""Seconds a Docker call of the pipeline runner waits (the docker SDK's default)."""
LOCK_NAME = "daemon.lock"
META_NAME = "meta.db"


class Daemon:
    """A running pfs node.

    Args:
        settings: where state, pool and sockets live.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock_file: IO[str] | None = None
        self._image: PoolImage | None = None
        self._servers: list[UnixSocketServer] = []
        self._stopping = threading.Event()
        self._cluster: Cluster | None = None
        self._sizes: SizeMeter | None = None
        self.store: MetadataStore | None = None
        self.repos: RepoService | None = None
        self.volumes: VolumeService | None = None
        self.pipelines: PipelineService | None = None
        self.reconciler: MountReconciler | None = None
        self.driver_before: str | None = None
        """The driver name the pool was served under before, when it was another."""

    def start(self) -> None:
        """Lock the state dir, bring up pool and store, reconcile, serve.

        Raises:
            Conflict: another daemon holds the state dir, or serves on a socket.
            StorageError: the pool cannot be prepared.
        """
        settings = self.settings
        self._lock_state_dir()
        try:
            for path in (settings.plugin_socket, settings.api_socket):
                if socket_in_use(path):
                    raise Conflict(f"another process is serving on {path} already")
            root, self._image = prepare_pool(settings.state_dir, settings.pool_size)
            pool = BtrfsPool(root)
            self.driver_before = served_before(root, settings.driver_name)
            if self.driver_before is not None:
                log.warning(change_words(self.driver_before, settings.driver_name))
            # Store and pool first, then the commit graph's parts, then the cluster's
            # pieces made from those parts, then the front the layers above call.
            coordinator: Coordinator
            if settings.cluster:
                from pfs_volume.daemon_cluster import Cluster

                self._cluster = Cluster(settings, pool)
                self.store = self._cluster.store
                coordinator = self._cluster.coordinator
            else:
                self.store = SqliteStore(root / META_NAME, settings.node_id)
                coordinator = SingleHost(settings.node_id)
            parts = RepoParts.build(
                self.store, pool, coordinator=coordinator, uses=PipelineUses(self.store)
            )
            if self._cluster is not None:
                self._cluster.replicate(parts)
            self.repos = RepoService.over(parts)
            report = self.repos.recover()
            for name in recover_imports(self.repos):
                log.info("repo=%s: an import interrupted by a crash was undone", name)
            for name in recover_puts(self.repos):
                log.info("branch=%s: a put interrupted by a crash left it clean", name)
            files, size = StagingArea(root / STAGING_FOLDER).clear()
            log.info("staging: removed %d upload(s) a crash cut off, %d bytes", files, size)
            for name in recover_merges(self.repos):
                log.info("branch=%s: a merge interrupted by a crash was undone", name)
            log.info(
                "recovered: %d commit(s) finished, %d redone, %d abandoned, %d repo(s) purged",
                len(report.finished),
                len(report.redone),
                len(report.abandoned),
                len(report.purged_repos),
            )
            # After recovery, which may have freed space: a full pool stays recoverable.
            parts.space.start()
            self._sizes = parts.sizes.start()
            self.volumes = VolumeService(
                self.repos,
                self.store,
                prefix=settings.driver_name,
                pool_changes=lambda: pool.changes,
            )
            self.reconciler = self._reconciler(self.volumes)
            nodes = None
            if self._cluster is not None:
                self._cluster.relock(self.store)
                peer_server = self._cluster.start()
                self._servers.append(peer_server)
                nodes = self._cluster.registry.live_nodes
            self._serve(
                create_plugin_app(self.volumes, scope=SCOPE),
                settings.plugin_socket,
                "Docker volume plugin",
                PLUGIN_CONNECTIONS,
            )
            self.pipelines = self._pipelines(self.repos, pool)
            self.repos.on_commit(lambda _commit: self._wake_pipelines())
            self._serve(
                create_api_app(
                    api_services(
                        self.repos,
                        self.volumes,
                        self.pipelines,
                        Doctor(
                            self.repos,
                            self.volumes,
                            self.reconciler,
                            settings.driver_name,
                            self.driver_before,
                        ),
                        nodes,
                        parts.fsck.check,
                    )
                ),
                settings.api_socket,
                "pfs API",
                API_CONNECTIONS,
            )
            self.pipelines.start()
            if self.reconciler is not None:
                self.reconciler.start()
        except BaseException:
            self.stop()
            raise

    def _reconciler(self, volumes: VolumeService) -> MountReconciler | None:
        """The mount reconciler (not started), hooked to the volume service's unmatched
        Unmounts; None when reconciliation is off."""
        settings = self.settings
        if not settings.reconcile_interval:
            log.warning(
                "mount reconciliation is off (--reconcile-interval 0): a mount record whose "
                "Unmount never comes stays until `pfs mount release`"
            )
            return None
        reconciler = MountReconciler(
            volumes,
            DockerEngine(functools.partial(self._docker_client, ENGINE_TIMEOUT)),
            interval=settings.reconcile_interval,
            grace=settings.reconcile_grace,
        )
        volumes.on_unmatched_unmount = reconciler.request
        return reconciler

    def _docker_client(self, timeout: int = DOCKER_TIMEOUT) -> Any:
        """A client of the engine pfs serves (``--docker-host``, else DOCKER_HOST, else
        the local engine), whose calls wait ``timeout`` seconds."""
        import docker

        host = self.settings.docker_host
        if host:
            return docker.DockerClient(base_url=host, timeout=timeout)
        return docker.from_env(timeout=timeout)

    def _wake_pipelines(self) -> None:
        if self.pipelines is not None:
            self.pipelines.wake()

    def _pipelines(self, repos: RepoService, pool: BtrfsPool) -> PipelineService:
        store = self.store
        if store is None:  # made with ``repos``, before this is called
            raise AssertionError("the metadata store is made before the pipelines")
        owns: Callable[[str], bool] | None = None
        if self._cluster is not None:
            registry, node_id = self._cluster.registry, self.settings.node_id

            def one_node(name: str) -> bool:
                live = [node.id for node in registry.live_nodes()]
                return placement.choose(name, live, 1) == (node_id,)

            owns = one_node

        runner = JobRunner(
            repos,
            pool,
            self._docker_client,
            self.settings.driver_name,
            self.settings.docker_host or "",
        )
        return PipelineService(
            repos,
            store,
            self.settings.node_id,
            runner,
            owns or (lambda _name: True),
            max_jobs=self.settings.max_jobs,
        )

    def _serve(self, app: object, path: Path, label: str, connections: int) -> None:
        """Serve ``app`` on the unix socket ``path``: its own loop, threads and
        connection limit, so that no client of one socket starves another's."""
        server = UnixSocketServer(app, path, label, connections)  # type: ignore[arg-type]
        server.start()
        self._servers.append(server)

    def _lock_state_dir(self) -> None:
        state_dir = self.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(state_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise Conflict(
                f"another pfs daemon (pid {holder}) is using the state dir {state_dir}; "
                "stop it first or give another --state-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    def wait(self) -> None:
        """Block until SIGTERM or SIGINT, then stop."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self._stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self._stopping.wait()
        self.stop()

    def stop(self) -> None:
        """Stop serving; unmount the pool image when no container has a volume mounted."""
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None
        if self.pipelines is not None:
            self.pipelines.stop()
            self.pipelines = None
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._sizes is not None:  # before the store and the pool go away
            self._sizes.close()
        try:
            mounted = len(self.store.list_mounts()) if self.store is not None else 0
        except PfsError as exc:
            log.warning("mounts unknown (%s): the pool stays mounted", exc)
            mounted = -1
        if self._cluster is not None:
            # With branches mounted for writing, the lease is left to expire rather than
            # given back: a quick restart then finds (and keeps) its locks.
            self._cluster.stop(leave=mounted == 0)
            self._cluster = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._image is not None:
            if mounted:
                log.info(
                    "pool left mounted at %s: %d volume mount(s) active",
                    self._image.mountpoint,
                    mounted,
                )
            else:
                try:
                    self._image.unmount()
                    log.info("pool unmounted from %s", self._image.mountpoint)
                except StorageError as exc:
                    log.warning("pool left mounted: %s", exc)
            self._image = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def api_services(
    repos: RepoService,
    volumes: VolumeService,
    pipelines: PipelineService,
    doctor: Doctor | None = None,
    nodes: Callable[[], list[NodeInfo]] | None = None,
    fsck: Callable[[bool], FsckReport] | None = None,
) -> ApiServices:
    """The services the API serves, over the commit graph, the volumes and the
    pipelines (and ``RepoParts.fsck``); ``doctor`` defaults to one without an engine."""
    return ApiServices(
        repos,
        volumes,
        FileService(repos),
        HistoryService(repos),
        pipelines,
        doctor or Doctor(repos, volumes, None, volumes.prefix),
        nodes,
        fsck,
    )
