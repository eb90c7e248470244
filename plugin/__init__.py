"""The Docker volume-plugin protocol (``docker.volumedriver/1.0``) as a flask app."""

from plugin.app import create_plugin_app
from plugin.protocol import Driver, VolumeInfo

__all__ = ["Driver", "VolumeInfo", "create_plugin_app"]
