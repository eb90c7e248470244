"""Mount records checked against the containers the Docker engine runs.

pfs commits a branch when Docker's last Unmount of it arrives. An Unmount that never
arrives leaves a mount record behind and auto-commit silently stops: pfs was killed while
Docker waited on it, dockerd was killed, or Docker retried an Unmount after a connection
error (its plugin client re-sends a request body it already read, so the retry arrives
empty and names no mount). So at start-up, every ``interval`` seconds and soon after an
Unmount pfs could not match, a background pass compares the records with the engine's
containers and releases every record no container holds, exactly as Docker's Unmount
would have: the last mount of a branch commits what changed. Each release is logged.

Docker does not show mount IDs, so records are matched to containers by volume name:
a volume with N records and K containers holding it has its N - K oldest records
released. A running, paused or restarting container holds its volumes. A container in
any other state (created while it starts, exited while ``docker cp`` copies into it)
holds them only for ``grace`` seconds after the record was made, the time Docker takes
from Mount to a running container. Should the match pick the wrong one of two records,
the one left is released by a later pass once its container stops: later, never lost.
A record released too early (a ``docker cp`` into a stopped container that outlasts the
grace) is not lost either: its own Unmount commits what was written since
(``VolumeService.unmount``).

Records are read before the containers are listed, so any record judged was made before
the listing, when its container already existed. A pass changes nothing when the engine
cannot be asked. The engine asked is the one pfs serves (``--docker-host``); a host whose
several engines share one legacy pfs socket must turn reconciliation off.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pfs_volume.errors import NotFound, PfsError, Unavailable
from pfs_volume.meta import MountRecord, utcnow
from pfs_volume.volumes import VolumeService

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
"""Seconds between passes: how long a stuck record can last after its container stopped."""
DEFAULT_GRACE = 30.0
"""Seconds a record counts as held by a container that is not running (being started)."""
SOON = 2.0
"""Seconds from an unmatched Unmount to the pass it asks for: Docker calls Unmount while
the container is still listed as running, so an immediate pass would find it held."""
ENGINE_TIMEOUT = 10
"""Seconds a pass waits for the engine's container list."""
HOLDING_STATES = frozenset({"running", "paused", "restarting"})


@dataclass(frozen=True)
class ContainerMount:
    """One volume mount point of one container, as the engine lists it."""

    container: str
    """The container's name (or id) for logs."""
    state: str
    volume: str


class Engine(Protocol):
    """What reconciliation needs of a container engine."""

    def volume_mounts(self) -> list[ContainerMount]:
        """Every volume mount point of every container, in any state.

        Raises:
            Unavailable: the engine cannot be asked.
        """


def stale_mounts(
    records: Iterable[MountRecord],
    mounts: Iterable[ContainerMount],
    now: datetime,
    grace: timedelta,
) -> list[MountRecord]:
    """The records no container holds (see the module), oldest first. Pure."""
    firm: Counter[str] = Counter()
    soft: Counter[str] = Counter()
    for mount in mounts:
        (firm if mount.state in HOLDING_STATES else soft)[mount.volume] += 1
    by_volume: dict[str, list[MountRecord]] = defaultdict(list)
    for record in records:
        by_volume[record.volume].append(record)
    stale: list[MountRecord] = []
    for volume, held in by_volume.items():
        held.sort(key=lambda r: (r.created, r.id))
        young = sum(1 for r in held if now - r.created < grace)
        keep = firm[volume] + min(soft[volume], young)
        stale.extend(held[: max(0, len(held) - keep)])
    stale.sort(key=lambda r: (r.created, r.id))
    return stale


@dataclass(frozen=True)
class PassResult:
    """What one pass found and did."""

    released: tuple[str, ...] = ()
    """Mount IDs released."""
    failed: tuple[str, ...] = ()
    """Mount IDs whose release failed (kept for the next pass)."""
    engine_error: str | None = None
    """Why the engine could not be asked (then nothing was released)."""


class DockerEngine:
    """The Docker engine, through the docker SDK (one list call, no plugin is asked).

    Args:
        client: makes a ``docker.DockerClient`` (called per pass, closed after).
    """

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def volume_mounts(self) -> list[ContainerMount]:
        """See ``Engine``."""
        import docker.errors
        import requests

        try:
            client = self._client()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise Unavailable(f"the Docker engine cannot be reached: {exc}") from None
        try:
            listed = client.api.containers(all=True)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise Unavailable(f"the Docker engine did not list its containers: {exc}") from None
        finally:
            client.close()
        found = []
        for container in listed:
            names = container.get("Names") or [container.get("Id", "?")[:12]]
            label = str(names[0]).lstrip("/")
            state = str(container.get("State", ""))
            for mount in container.get("Mounts") or ():
                if mount.get("Type") == "volume" and mount.get("Name"):
                    found.append(ContainerMount(label, state, str(mount["Name"])))
        return found


class MountReconciler:
    """Releases mount records no container holds: at start, every ``interval`` seconds,
    and ``SOON`` after ``request``.

    Args:
        volumes: the volume service whose records are reconciled (its ``release`` is
            Docker's Unmount).
        engine: the container engine to ask.
        interval: seconds between passes.
        grace: seconds a record counts as held by a container that is not running.
        clock: the current UTC time.
    """

    def __init__(
        self,
        volumes: VolumeService,
        engine: Engine,
        interval: float = DEFAULT_INTERVAL,
        grace: float = DEFAULT_GRACE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.volumes = volumes
        self.engine = engine
        self.interval = interval
        self.grace = timedelta(seconds=grace)
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._soon: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._engine_error: str | None = None
        self.last: PassResult | None = None

    def start(self) -> None:
        """Run the first pass now, in the background, then one per interval."""
        self._thread = threading.Thread(target=self._loop, name="mount-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (a pass under way finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def request(self) -> None:
        """Ask for a pass ``SOON`` (an Unmount pfs could not match arrived)."""
        with self._lock:
            self._soon = SOON
        self._wake.set()

    def stale(self) -> Sequence[MountRecord]:
        """The records a pass would release now, releasing nothing.

        Raises:
            Unavailable: the engine cannot be asked.
        """
        records = list(self.volumes.mounts())
        return stale_mounts(records, self.engine.volume_mounts(), self.clock(), self.grace)

    def run_once(self) -> PassResult:
        """One pass: release every record no container holds (see the module)."""
        try:
            doomed = self.stale()
        except Unavailable as exc:
            if self._engine_error != str(exc):
                log.warning("mount reconciliation skipped: %s", exc)
            self._engine_error = str(exc)
            return PassResult(engine_error=str(exc))
        except PfsError as exc:
            log.warning("mount reconciliation skipped: the mount records: %s", exc)
            return PassResult()
        if self._engine_error is not None:
            log.info("mount reconciliation: the Docker engine answers again")
            self._engine_error = None
        released, failed = [], []
        for record in doomed:
            log.warning(
                "volume=%s repo=%s branch=%s commit=%s mount=%s: no container holds it; "
                "released as Docker's Unmount would have been",
                record.volume,
                record.repo,
                record.branch,
                record.commit,
                record.id,
            )
            try:
                self.volumes.release(record.id)
            except NotFound:
                continue  # Docker's own Unmount came first
            except PfsError as exc:
                log.error("mount=%s release failed: %s", record.id, exc)
                if self.volumes.store.get_mount(record.id) is not None:
                    failed.append(record.id)
                    continue
            released.append(record.id)
        return PassResult(tuple(released), tuple(failed))

    def _loop(self) -> None:
        wait = 0.0
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                soon, self._soon = self._soon, None
            if soon is not None and self._stop.wait(soon):
                return
            try:
                self.last = self.run_once()
            except Exception:  # the loop must outlive any one pass
                log.exception("mount reconciliation pass failed")
            wait = self.interval
