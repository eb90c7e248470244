"""The pfs HTTP API (flask, JSON, under /v1/): translation only, no logic."""

from pfs_volume.api.app import create_api_app

__all__ = ["create_api_app"]
