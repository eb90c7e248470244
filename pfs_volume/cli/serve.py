"""``pfs serve``: run the node daemon. The daemon is imported only when it runs, so the
client verbs never load the server."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from pfs_volume.cli.argtypes import file_to_write, folder, integer, number, one_of
from pfs_volume.cli.commands import arg, command
from pfs_volume.cli.output import note
from pfs_volume.config import (
    DEFAULT_API_SOCKET,
    DEFAULT_DRIVER_NAME,
    DEFAULT_MAX_JOBS,
    DEFAULT_POOL_SIZE,
    DEFAULT_RECONCILE_GRACE,
    DEFAULT_RECONCILE_INTERVAL,
    DEFAULT_STATE_DIR,
    PLUGIN_DIR,
    Settings,
    parse_endpoints,
    parse_size,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@command("serve")
@arg(
    "--state-dir",
    env="PFS_STATE_DIR",
    default=str(DEFAULT_STATE_DIR),
    type=folder,
    help="Where the pool and metadata live (env PFS_STATE_DIR; default: %(default)s).",
)
@arg(
    "--pool-size",
    env="PFS_POOL_SIZE",
    default=DEFAULT_POOL_SIZE,
    help="Size of the sparse pool image made when the state dir is not on btrfs "
    "(env PFS_POOL_SIZE; default: %(default)s).",
)
@arg(
    "--driver-name",
    env="PFS_DRIVER_NAME",
    default=DEFAULT_DRIVER_NAME,
    help="Docker volume driver name; also the volume-name prefix "
    "(env PFS_DRIVER_NAME; default: %(default)s).",
)
@arg(
    "--api-socket",
    env="PFS_API_SOCKET",
    default=str(DEFAULT_API_SOCKET),
    type=file_to_write,
    help="Unix socket of the pfs HTTP API (env PFS_API_SOCKET; default: %(default)s).",
)
@arg(
    "--plugin-dir",
    env="PFS_PLUGIN_DIR",
    default=str(PLUGIN_DIR),
    type=folder,
    help="Folder of the plugin socket DRIVER_NAME.sock: Docker looks in the default one; "
    "another serves only clients that call the plugin protocol themselves, such as "
    "tests (env PFS_PLUGIN_DIR; default: %(default)s).",
)
@arg(
    "--log-level",
    env="PFS_LOG_LEVEL",
    default="info",
    type=one_of("debug", "info", "warning", "error"),
    metavar="{debug,info,warning,error}",
    help="How much the daemon logs (env PFS_LOG_LEVEL; default: %(default)s).",
)
@arg(
    "--etcd",
    env="PFS_ETCD",
    default="",
    metavar="URL[,URL...]",
    help="Join a cluster coordinated by these etcd endpoints (env PFS_ETCD); without it "
    "the node keeps its metadata in the pool (SQLite).",
)
@arg(
    "--node-id",
    env="PFS_NODE_ID",
    default=socket.gethostname(),
    help="This node's id in the cluster (env PFS_NODE_ID; default: the host name).",
)
@arg(
    "--advertise",
    env="PFS_ADVERTISE",
    default="",
    metavar="http://HOST:PORT",
    help="Where peers reach this node's API; it is served there (env PFS_ADVERTISE).",
)
@arg(
    "--cluster-token",
    env="PFS_CLUSTER_TOKEN",
    default="",
    help="Shared secret of the cluster's nodes (env PFS_CLUSTER_TOKEN).",
)
@arg(
    "--replicas",
    env="PFS_REPLICAS",
    default=2,
    type=integer,
    help="Copies of each commit a new repo keeps (env PFS_REPLICAS; default: %(default)s).",
)
@arg(
    "--docker-host",
    env="PFS_DOCKER_HOST",
    default="",
    metavar="URL",
    help="The Docker engine pfs serves: pipelines run their containers there, and mount "
    "records are reconciled with its containers (env PFS_DOCKER_HOST; default: "
    "DOCKER_HOST, else the local engine).",
)
@arg(
    "--repair-sweep",
    env="PFS_REPAIR_SWEEP",
    default=600.0,
    type=number,
    metavar="SECONDS",
    help="How often a cluster node checks every repo and commit record for copies to "
    "make or drop; between checks it repairs what etcd reports as it changes "
    "(env PFS_REPAIR_SWEEP; default: %(default)s).",
)
@arg(
    "--reconcile-interval",
    env="PFS_RECONCILE_INTERVAL",
    default=DEFAULT_RECONCILE_INTERVAL,
    type=number,
    metavar="SECONDS",
    help="How often mount records are checked against the engine's containers; a record "
    "no container holds is released as Docker's Unmount would be, committing what changed. "
    "0 turns it off: do that when several engines share this host's pfs socket "
    "(env PFS_RECONCILE_INTERVAL; default: %(default)s).",
)
@arg(
    "--reconcile-grace",
    env="PFS_RECONCILE_GRACE",
    default=DEFAULT_RECONCILE_GRACE,
    type=number,
    metavar="SECONDS",
    help="How long a new mount record counts as held by a container that is not running "
    "yet (Docker mounts before it starts) (env PFS_RECONCILE_GRACE; default: %(default)s).",
)
@arg(
    "--max-jobs",
    env="PFS_MAX_JOBS",
    default=DEFAULT_MAX_JOBS,
    type=integer,
    help="Pipeline jobs this node runs at once, across its pipelines; each pipeline runs "
    "one job at a time (env PFS_MAX_JOBS; default: %(default)s).",
)
@arg(
    "--lease-ttl",
    env="PFS_LEASE_TTL",
    default=10,
    type=integer,
    help="Seconds a silent node stays a member (env PFS_LEASE_TTL; default: %(default)s).",
)
def serve(
    state_dir: Path,
    pool_size: str,
    driver_name: str,
    api_socket: Path,
    plugin_dir: Path,
    log_level: str,
    etcd: str,
    node_id: str,
    advertise: str,
    cluster_token: str,
    replicas: int,
    lease_ttl: int,
    docker_host: str,
    repair_sweep: float,
    reconcile_interval: float,
    reconcile_grace: float,
    max_jobs: int,
) -> None:
    """Run the node daemon (Docker volume plugin and pfs API)."""
    import threading

    from pfs_volume.daemon_sockets import Sockets, stop_on_signals

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    settings = Settings(
        state_dir=state_dir.absolute(),
        pool_size=parse_size(pool_size),
        driver_name=driver_name,
        api_socket=api_socket.absolute(),
        plugin_dir=plugin_dir.absolute(),
        node_id=node_id,
        etcd=parse_endpoints(etcd),
        advertise=advertise,
        cluster_token=cluster_token,
        replicas=replicas,
        lease_ttl=lease_ttl,
        docker_host=docker_host,
        repair_sweep=repair_sweep,
        reconcile_interval=reconcile_interval,
        reconcile_grace=reconcile_grace,
        max_jobs=max_jobs,
    )
    stopping = threading.Event()
    stop_on_signals(stopping)  # before the sockets: none is left by a signal meanwhile
    sockets = Sockets(settings).open()
    # Imported once the sockets answer: importing the services takes most of a second.
    from pfs_volume.daemon import Daemon

    daemon = Daemon(settings, sockets, stopping)
    daemon.start()
    note(
        f"pfs serving driver {settings.driver_name!r} on {settings.plugin_socket}, "
        f"API on {settings.api_socket}, state in {settings.state_dir}"
    )
    daemon.wait()
