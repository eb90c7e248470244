"""Revert and merge, exact on trees: see ``service``."""

from pfs_volume.history.service import (
    MERGE_ORIGIN,
    REVERT_ORIGIN,
    STRATEGIES,
    HistoryService,
    MergeResult,
)

__all__ = ["MERGE_ORIGIN", "REVERT_ORIGIN", "STRATEGIES", "HistoryService", "MergeResult"]
