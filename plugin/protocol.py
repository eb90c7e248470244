"""The volume-plugin protocol: endpoint paths, wire fields and the Driver interface.

Quirks of Docker's side, handled in ``plugin.app``:
* Docker sends no Content-Type: every body is parsed as JSON regardless.
* Docker may repeat a Mount ID and may call Create for a volume that exists.
* Docker calls Get on every volume plugin for a name it does not know yet (and ignores
  their errors), which is how ``PREFIX/...`` names work without ``--volume-driver``.
* Docker retries a call that met a connection error (pfs restarting) for up to 30 s,
  re-sending a request body the first try already read: the retry arrives empty. An
  empty Unmount is answered ``{}`` and reconciled (``Driver.unmount_unnamed``).
* Docker waits two minutes for Mount and one for everything else; pfs's waits for
  locks stay below that (``pfs_volume.repos.LOCK_TIMEOUT``) and answer "busy".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pfs_volume.volumes import VolumeInfo

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
IMPLEMENTS = ["VolumeDriver"]

ACTIVATE = "/Plugin.Activate"
CREATE = "/VolumeDriver.Create"
REMOVE = "/VolumeDriver.Remove"
MOUNT = "/VolumeDriver.Mount"
UNMOUNT = "/VolumeDriver.Unmount"
PATH = "/VolumeDriver.Path"
GET = "/VolumeDriver.Get"
LIST = "/VolumeDriver.List"
CAPABILITIES = "/VolumeDriver.Capabilities"

ENDPOINTS = (ACTIVATE, CREATE, REMOVE, MOUNT, UNMOUNT, PATH, GET, LIST, CAPABILITIES)


class Driver(Protocol):
    """One method per endpoint; raise ``PfsError`` to answer with ``Err``."""

    def create(self, name: str, options: Mapping[str, Any]) -> None:
        """VolumeDriver.Create."""

    def remove(self, name: str) -> None:
        """VolumeDriver.Remove."""

    def mount(self, name: str, mount_id: str) -> Path:
        """VolumeDriver.Mount: the path Docker bind-mounts into the container."""

    def unmount(self, name: str, mount_id: str) -> None:
        """VolumeDriver.Unmount."""

    def unmount_unnamed(self) -> None:
        """VolumeDriver.Unmount with an empty body: Docker's retry after a connection
        error re-sends a body its first try consumed, so it names no mount."""

    def path(self, name: str) -> str:
        """VolumeDriver.Path: the volume's path, or "" when it has none yet."""

    def get(self, name: str) -> VolumeInfo:
        """VolumeDriver.Get."""

    def list(self) -> Sequence[VolumeInfo]:
        """VolumeDriver.List (the same tuple while nothing changed lets the plugin keep
        its encoding)."""


__all__ = ["Driver", "VolumeInfo"]


def __getattr__(name: str) -> Any:
    """``VolumeInfo``, imported when first asked for: the daemon serves this protocol
    before it imports the volume service (``pfs_volume.daemon_sockets``)."""
    if name == "VolumeInfo":
        from pfs_volume.volumes import VolumeInfo

        return VolumeInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
