"""Docker volumes over the commit graph: what a name means (``targets``) and Docker's
volume calls with their mount records (``service``)."""

from pfs_volume.volumes.listing import VolumeInfo
from pfs_volume.volumes.service import SCOPE, UNMOUNT_ORIGIN, VolumeService
from pfs_volume.volumes.targets import Target, VolumeTargets

__all__ = ["SCOPE", "UNMOUNT_ORIGIN", "Target", "VolumeInfo", "VolumeService", "VolumeTargets"]
