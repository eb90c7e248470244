"""Daemon settings: defaults, ``PFS_*`` environment variables and options, validated."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pfs_volume.errors import InvalidRequest
from pfs_volume.names import check_component

DEFAULT_STATE_DIR = Path("/var/lib/pfs")
DEFAULT_POOL_SIZE = "20G"
DEFAULT_DRIVER_NAME = "pfs"
DEFAULT_API_SOCKET = Path("/run/pfs/api.sock")
DEFAULT_RECONCILE_INTERVAL = 30.0
DEFAULT_RECONCILE_GRACE = 30.0
DEFAULT_MAX_JOBS = 4
"""Pipeline jobs a node runs at once, across all its pipelines."""
MAX_JOBS = 64
PLUGIN_DIR = Path("/run/docker/plugins")
"""Where Docker looks for legacy plugins' sockets."""

_SIZE = re.compile(r"([0-9]+)([KMGT]?)(i?B)?", re.IGNORECASE)
MAX_SIZE = 2**63 - 1
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from ``"20G"``, ``"512M"``, ``"1GiB"`` or a plain number (binary units).

    Raises:
        InvalidRequest: for anything else.
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise InvalidRequest(
            f"size {text!r} is not understood; give a number of bytes with an optional "
            "unit K, M, G or T (powers of 1024), e.g. 20G"
        )
    size = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if size > MAX_SIZE:  # else an OverflowError deep in the pool's set-up
        raise InvalidRequest(f"size {text!r} is over {MAX_SIZE} bytes (8 EiB), btrfs's limit")
    return size


_URL = re.compile(r"http://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})/?")


def _check_url(url: str, what: str) -> str:
    match = _URL.fullmatch(url)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise InvalidRequest(
            f"{what} {url!r} is not understood; give http://HOST:PORT, e.g. http://127.0.0.1:2379"
        )
    return url


def parse_endpoints(text: str) -> tuple[str, ...]:
    """etcd endpoints from ``"http://a:2379,http://b:2379"`` (empty text: none).

    Raises:
        InvalidRequest: for a malformed URL.
    """
    return tuple(
        _check_url(part.strip(), "--etcd endpoint") for part in text.split(",") if part.strip()
    )


_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """A duration from ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or ``"2w"``.

    Raises:
        InvalidRequest: for anything else.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InvalidRequest(
            f"duration {text!r} is not understood; give a whole number and a unit: s, m, "
            "h, d or w, e.g. 30d"
        )
    return timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])


@dataclass(frozen=True)
class Settings:
    """Everything ``pfs serve`` needs to start."""

    state_dir: Path = DEFAULT_STATE_DIR
    pool_size: int = parse_size(DEFAULT_POOL_SIZE)
    driver_name: str = DEFAULT_DRIVER_NAME
    api_socket: Path = DEFAULT_API_SOCKET
    plugin_dir: Path = PLUGIN_DIR
    node_id: str = field(default_factory=socket.gethostname)
    etcd: tuple[str, ...] = ()
    """etcd client URLs; empty: the embedded store on one host."""
    advertise: str = ""
    """The node API's URL its peers use, e.g. ``http://127.0.0.2:7070`` (cluster only)."""
    cluster_token: str = ""
    replicas: int = 2
    lease_ttl: int = 10
    repair_sweep: float = 600.0
    """Seconds between full repair sweeps of a cluster node (changes between them are
    repaired as etcd reports them)."""
    etcd_prefix: str = "/pfs"
    docker_host: str = ""
    """The Docker engine pfs serves: pipelines run their containers there and mount
    records are reconciled with its containers (default: DOCKER_HOST, else the local
    engine)."""
    reconcile_interval: float = DEFAULT_RECONCILE_INTERVAL
    """Seconds between mount reconciliation passes; 0: none."""
    reconcile_grace: float = DEFAULT_RECONCILE_GRACE
    """Seconds a new mount record counts as held by a container not running yet."""
    max_jobs: int = DEFAULT_MAX_JOBS
    """Pipeline jobs this node runs at once (one per pipeline at a time)."""

    def __post_init__(self) -> None:
        check_component(self.node_id, "node id")
        check_component(self.driver_name, "driver")
        if self.driver_name != self.driver_name.lower():
            raise InvalidRequest(
                f"driver name {self.driver_name!r} must be lowercase (Docker plugin names are)"
            )

        if not (self.reconcile_interval == 0 or 1 <= self.reconcile_interval <= 86400):
            raise InvalidRequest(
                f"--reconcile-interval must be 0 (off) or from 1 to 86400 seconds, not "
                f"{self.reconcile_interval:g}"
            )
        if not 0.5 <= self.reconcile_grace <= 3600:
            raise InvalidRequest(
                f"--reconcile-grace must be from 0.5 to 3600 seconds, not {self.reconcile_grace:g}"
            )
        if not 1 <= self.repair_sweep <= 86400:
            raise InvalidRequest(
                f"--repair-sweep must be from 1 to 86400 seconds, not {self.repair_sweep:g}"
            )
        if not 1 <= self.max_jobs <= MAX_JOBS:
            raise InvalidRequest(f"--max-jobs must be from 1 to {MAX_JOBS}, not {self.max_jobs}")
        if self.etcd:
            for url in self.etcd:
                _check_url(url, "--etcd endpoint")
            _check_url(self.advertise, "--advertise")
            if len(self.cluster_token) < 16:
                raise InvalidRequest(
                    "a cluster node needs --cluster-token (env PFS_CLUSTER_TOKEN) of at least "
                    "16 characters, the same on every node: peers refuse requests without it"
                )
            if not 1 <= self.replicas <= 16:
                raise InvalidRequest(f"--replicas must be from 1 to 16, not {self.replicas}")
            if not 2 <= self.lease_ttl <= 300:
                raise InvalidRequest(
                    f"--lease-ttl must be from 2 to 300 seconds, not {self.lease_ttl}"
                )

    @property
    def cluster(self) -> bool:
        """True when the node runs in a cluster (etcd endpoints were given)."""
        return bool(self.etcd)

    @property
    def listen(self) -> tuple[str, int]:
        """Host and port the node API binds: those of ``advertise``."""
        match = _URL.fullmatch(self.advertise)
        assert match is not None
        return match.group(1), int(match.group(2))

    @property
    def plugin_socket(self) -> Path:
        """The socket Docker finds the driver by: ``/run/docker/plugins/NAME.sock``."""
        return self.plugin_dir / f"{self.driver_name}.sock"
