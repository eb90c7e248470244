"""The Docker driver name a pool was served under, and plain words when it changes.

Docker keeps each volume with the driver that made it. A pool served under another name
than before (``--driver-name``) keeps its repos, but every volume and container Docker
knows under the old name now reaches no plugin, and ``NEW/repo`` names are new Docker
volumes of the same repos. That is easy to do by mistake and hard to see, so pfs records
the name in the pool, says so at start-up, and ``pfs doctor`` says it again.
"""

from __future__ import annotations

import os
from pathlib import Path

from pfs_volume.durable import replace_synced
from pfs_volume.errors import StorageError

FILE = "driver-name"
MAX_BYTES = 256


def served_before(pool_root: Path, name: str) -> str | None:
    """Record ``name`` as the driver name the pool at ``pool_root`` is served under; the
    name it was served under before, when that was another (else None).

    Raises:
        StorageError: the record cannot be read or written.
    """
    path = pool_root / FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        before = None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    else:
        try:
            before = os.read(fd, MAX_BYTES).decode("utf-8", "replace").strip() or None
        finally:
            os.close(fd)
    if before != name:
        try:
            replace_synced(path, f"{name}\n".encode())
        except OSError as exc:
            raise StorageError(f"cannot record the driver name in {path}: {exc}") from exc
    return before if before != name else None


def change_words(before: str, now: str) -> str:
    """What a user must know when the pool served as ``before`` is now served as ``now``."""
    return (
        f"this pool was last served as Docker volume driver {before!r} and is now served as "
        f"{now!r}. Docker keeps each volume with the driver that made it: volumes and "
        f"containers using {before!r} (-v {before}/REPO...) reach no plugin until a daemon "
        f"serves {before!r} again, and {now}/REPO names are new Docker volumes of the same "
        f"repos. Mount records made under {before!r} are released, committing what changed, "
        f"once no container holds them. To keep the old name, restart with "
        f"--driver-name {before}"
    )
