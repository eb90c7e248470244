"""The node daemon: one state dir, one pool, one store, two sockets.

Start-up order matters for crash safety: take the state dir's lock, listen on both
sockets (answering "starting" to all but Docker's handshake: ``pfs_volume.startup``),
mount the pool, open the store, reconcile disk and metadata, and only then serve Docker's
volume calls and the API.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pfs_volume.api.app import ApiServices, create_api_app
from pfs_volume.btrfs import BtrfsPool, PoolImage, prepare_pool
from pfs_volume.cluster import placement
from pfs_volume.config import Settings
from pfs_volume.daemon_sockets import Sockets, stop_on_signals
from pfs_volume.doctor import Doctor
from pfs_volume.driver_name import change_words, served_before
from pfs_volume.errors import PfsError, StorageError
from pfs_volume.failpoints import failpoint
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
from pfs_volume.systemd_notify import notify
from pfs_volume.transfer import recover_imports
from pfs_volume.transport import UnixSocketServer
from pfs_volume.upload import STAGING_FOLDER, StagingArea
from pfs_volume.volumes import VolumeService

if TYPE_CHECKING:
    from pfs_volume.cluster.membership import NodeInfo
    from pfs_volume.daemon_cluster import Cluster

log = logging.getLogger(__name__)

DOCKER_TIMEOUT = 60
"""Seconds a Docker call of the pipeline runner waits (the docker SDK's default)."""
SIGNAL_CHECK = 0.5
"""Seconds between the main thread's looks for a SIGTERM or SIGINT that reached another
thread (``wait``)."""
META_NAME = "meta.db"


class Daemon:
    """A running pfs node.

    Args:
        settings: where state, pool and sockets live.
        sockets: the state dir's lock and both sockets, opened already (``pfs serve``
            opens them before it imports this module); opened by ``start`` when omitted.
        stopping: set to stop the daemon (``pfs serve`` sets it on SIGTERM and SIGINT
            from before the sockets open: ``stop_on_signals``); its own when omitted.
    """

    def __init__(
        self,
        settings: Settings,
        sockets: Sockets | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self._sockets = sockets or Sockets(settings)
        self.startup = self._sockets.startup
        self._image: PoolImage | None = None
        self._servers: list[UnixSocketServer] = []
        self._stopping = stopping or threading.Event()
        self._cluster: Cluster | None = None
        self._sizes: SizeMeter | None = None
        self.store: MetadataStore | None = None
        self.repos: RepoService | None = None
        self.volumes: VolumeService | None = None
        self.pipelines: PipelineService | None = None
        self.reconciler: MountReconciler | None = None
        self.driver_before: str | None = None
        """The driver name the pool was served under before, when it was another."""
        self._bringing_up: threading.Thread | None = None

    def start(self) -> None:
        """Open the sockets (unless ``pfs serve`` did) and bring the node up behind them
        on a thread of its own (``pfs_volume.startup``: until ready, volume calls and
        the API answer what it is doing). ``wait`` raises what made start-up fail.

        Raises:
            Conflict: another daemon holds the state dir, or serves on a socket.
        """
        if not self._sockets.is_open:
            self._sockets.open()
        self._bringing_up = threading.Thread(target=self._bring_up, name="pfs-start")
        self._bringing_up.start()

    def _bring_up(self) -> None:
        """Start-up behind the sockets; a failure stops the daemon, which exits with it
        (``wait``), except an unreachable etcd, which is retried."""
        try:
            if self._stopping.is_set():  # a signal came while the daemon was imported
                log.info("stopped before start-up began")
                return
            self._prepare()
        except BaseException as exc:
            if isinstance(exc, PfsError):
                log.error("start-up failed: %s", exc)
            else:
                log.exception("start-up failed")
            self.startup.fail(exc)
            self._stopping.set()

    def _prepare(self) -> None:
        """Pool, store, recovery, services; then Docker's calls and the API are served.
        Returns early, having started nothing more, when the daemon is told to stop."""
        settings = self.settings
        self.startup.step("preparing the pool")
        root, self._image = prepare_pool(settings.state_dir, settings.pool_size)
        pool = BtrfsPool(root)
        self.driver_before = served_before(root, settings.driver_name)
        if self.driver_before is not None:
            log.warning(change_words(self.driver_before, settings.driver_name))
        failpoint("start.pool_ready")
        if self._stopping.is_set():  # a stop does not wait for a recovery first
            log.info("stopped while starting")
            return
        if settings.cluster:
            from pfs_volume.daemon_cluster import retrying_etcd

            parts = retrying_etcd(
                functools.partial(self._open, pool),
                self._close_store,
                self.startup,
                self._stopping,
                settings.etcd,
            )
        else:
            parts = self._open(pool)
        repos = self.repos
        if parts is None or repos is None or self._stopping.is_set():
            log.info("stopped while starting")
            return
        # After recovery, which may have freed space: a full pool stays recoverable.
        self.startup.step("starting the services")
        parts.space.start()
        self._sizes = parts.sizes.start()
        self.volumes = VolumeService(
            repos, parts.store, prefix=settings.driver_name, pool_changes=pool.changed_paths
        )
        self.reconciler = self._reconciler(self.volumes)
        nodes = None
        if self._cluster is not None:
            self._servers.append(self._cluster.start())
            nodes = self._cluster.registry.live_nodes
        self.pipelines = self._pipelines(repos, pool)
        repos.on_commit(lambda _commit: self._wake_pipelines())
        doctor = Doctor(
            repos, self.volumes, self.reconciler, settings.driver_name, self.driver_before
        )
        services = api_services(
            repos, self.volumes, self.pipelines, doctor, nodes, parts.fsck.check
        )
        self.pipelines.start()
        if self.reconciler is not None:
            self.reconciler.start()
        self._sockets.serve_ready(self.volumes, create_api_app(services))
        self.startup.ready()

    def _open(self, pool: BtrfsPool, retrying: bool = False) -> RepoParts:
        """Open the store, build the commit graph's parts and recover what a crash left
        (``retrying``: the start-up message still says why etcd was not reached).

        Raises:
            Unavailable: etcd cannot be reached (a cluster node).
        """
        settings = self.settings
        # Store and pool first, then the commit graph's parts, then the cluster's
        # pieces made from those parts, then the front the layers above call.
        coordinator: Coordinator
        if settings.cluster:
            from pfs_volume.daemon_cluster import Cluster

            if not retrying:
                self.startup.step(f"joining the cluster at {', '.join(settings.etcd)}")
            self._cluster = Cluster(settings, pool)
            self.store = self._cluster.store
            coordinator = self._cluster.coordinator
        else:
            self.store = SqliteStore(pool.root / META_NAME, settings.node_id)
            coordinator = SingleHost(settings.node_id)
        failpoint("start.store_open")
        parts = RepoParts.build(
            self.store, pool, coordinator=coordinator, uses=PipelineUses(self.store)
        )
        if self._cluster is not None:
            self._cluster.replicate(parts)
        self.repos = RepoService.over(parts)
        self.startup.step("recovering what a crash left unfinished")
        report = self.repos.recover()
        for name in recover_imports(self.repos):
            log.info("repo=%s: an import interrupted by a crash was undone", name)
        for name in recover_puts(self.repos):
            log.info("branch=%s: a put interrupted by a crash left it clean", name)
        files, size = StagingArea(pool.root / STAGING_FOLDER).clear()
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
        if self._cluster is not None:
            self._cluster.relock(self.store)
        return parts

    def _close_store(self) -> None:
        """Drop a store (and cluster parts) that a failed ``_open`` left: none of it
        was started beyond its lease."""
        self.repos = None
        if self._cluster is not None:
            self._cluster.stop(leave=False)
            self._cluster = None
        if self.store is not None:
            self.store.close()
            self.store = None

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

    def wait(self) -> None:
        """Block until SIGTERM or SIGINT, or until start-up fails, then stop.

        Raises:
            PfsError: what made start-up fail.
        """

        stop_on_signals(self._stopping)
        # Python runs a signal's handler on the main thread only, and a wait with no
        # timeout there ends only for a signal the kernel hands to that very thread. The
        # kernel may hand SIGTERM to any thread (it did, now and then, while the size
        # meter started its btrfs processes): the handler then stayed pending, and the
        # daemon ran on until systemd's or Docker's SIGKILL. A wait in slices lets it run.
        while not self._stopping.wait(SIGNAL_CHECK):
            pass
        self.stop()
        failure = self.startup.failure
        if isinstance(failure, PfsError):
            raise failure
        if failure is not None:
            raise PfsError(f"start-up failed: {failure!r}") from failure

    def stop(self) -> None:
        """Stop serving; unmount the pool image when no container has a volume mounted."""
        notify("STOPPING=1")
        began = time.monotonic()
        self._stopping.set()
        # Calls waiting for a start-up that will not end are answered why, at once.
        self.startup.stopping()
        if self._bringing_up is not None:
            # Start-up notices the stop between its steps: nothing is torn down under it.
            self._bringing_up.join()
            self._bringing_up = None
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None
        if self.pipelines is not None:
            self.pipelines.stop()
            self.pipelines = None
        self._sockets.stop_serving()
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._sizes is not None and not self._sizes.close():  # before the store, the pool
            log.warning("the size meter's measurement did not end: the pool may stay busy")
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
        self._sockets.unlock()
        log.info("stopped in %.2f s", time.monotonic() - began)


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
