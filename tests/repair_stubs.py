"""Stand-ins for the parts a ``cluster.repair.RepairDriver`` calls that a repair test does
not look at (pure logic only: the driver's decisions, not etcd or btrfs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placed:
    """A repo's placement as a repair pass reads it."""

    name: str
    replicas: int
    placement: tuple[str, ...]


class Idle:
    """Write locks and maintenance with nothing to do: no lock held here, nothing to
    release."""

    def held_here(self) -> bool:
        return False

    def held_keys(self) -> list[str]:
        return []

    def release_idle_locks(self, keys: Any) -> None:
        pass
