"""The Docker volume-plugin protocol (``docker.volumedriver/1.0``) as a flask app."""

from typing import TYPE_CHECKING, Any

from plugin.app import create_plugin_app
from plugin.protocol import Driver

if TYPE_CHECKING:
    from plugin.protocol import VolumeInfo

__all__ = ["Driver", "VolumeInfo", "create_plugin_app"]


def __getattr__(name: str) -> Any:
    """``VolumeInfo``, imported when first asked for (``plugin.protocol``)."""
    if name == "VolumeInfo":
        from plugin import protocol

        return protocol.VolumeInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
