"""pfs: commit-based Docker volumes on btrfs."""

__version__ = "0.1.0"
