"""What repair does about one change in etcd: the pure decision of the watch-driven
repair (``cluster/repair.py`` applies it).

``RepairModel`` keeps the little it needs to decide (the live node ids and each repo's
placement and replica count), set by a full sweep (``reset``) and kept current by the
changes that follow (``apply``). Each change yields the work it calls for, never
anything that reads or writes; the work reads what it needs afresh when it runs, so a
decision made on a slightly old view costs at most a pass that finds nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pfs_volume.cluster import placement
from pfs_volume.meta.etcd_watch import WatchEvent


@dataclass(frozen=True)
class Replace:
    """Re-place every repo over the live nodes (membership changed)."""


@dataclass(frozen=True)
class CopyRepo:
    """Fetch every commit of the repo this node should hold and lacks."""

    repo: str


@dataclass(frozen=True)
class Fetch:
    """Fetch one commit this node should hold and lacks."""

    repo: str
    commit: str


@dataclass(frozen=True)
class Unlist:
    """Take this node off a pruned commit's holders."""

    repo: str
    commit: str


@dataclass(frozen=True)
class DropPruned:
    """Delete this pool's copies of the repo's pruned commits."""

    repo: str


@dataclass(frozen=True)
class PurgeDeleted:
    """Remove this pool's data of repos deleted elsewhere."""


@dataclass(frozen=True)
class ReleaseIdleLocks:
    """Give back the write locks this node holds and nothing here uses."""


Work = Replace | CopyRepo | Fetch | Unlist | DropPruned | PurgeDeleted | ReleaseIdleLocks


@dataclass(frozen=True)
class RepoPlacement:
    """What the model knows of a repo (a ``placement.Placed``)."""

    name: str
    replicas: int
    placement: tuple[str, ...]


class RepairModel:
    """This node's view for deciding repair work from etcd changes.

    Args:
        prefix: the cluster's key prefix (``/pfs``).
        node_id: this node's id.
    """

    def __init__(self, prefix: str, node_id: str) -> None:
        self.prefix = prefix.rstrip("/") + "/"
        self.node_id = node_id
        self.live: set[str] = set()
        self.repos: dict[str, RepoPlacement] = {}
        self.deleted: set[str] = set()
        """Repos deleted since the last sweep: this node's purge skips one it mounts, so
        each mount here that ends asks for another purge while any is left."""
        self.pruned: set[str] = set()
        """Repos with commits pruned since the last sweep: a copy mounted here is kept
        while mounted, so each mount here that ends asks for their copies dropped."""

    def reset(self, live: Iterable[str], repos: Iterable[placement.Placed]) -> None:
        """Start over from a full read of the live nodes and the repos."""
        self.live = set(live)
        self.repos = {r.name: RepoPlacement(r.name, r.replicas, tuple(r.placement)) for r in repos}
        self.deleted = set()
        self.pruned = set()

    def apply(self, event: WatchEvent) -> list[Work]:
        """Take in one change; the work it calls for (none for keys repair ignores)."""
        if not event.key.startswith(self.prefix) or not _utf8(event.key):
            return []  # a key pfs never writes: not UTF-8 (``etcd_watch._event``)
        kind, _, rest = event.key[len(self.prefix) :].partition("/")
        if kind == "nodes":
            return self._node(rest, event)
        if kind == "repos":
            return self._repo(rest, event)
        if kind == "gone":
            return [] if event.deleted else [PurgeDeleted()]
        if kind == "commits":
            repo, _, commit = rest.partition("/")
            return [] if event.deleted else self._commit(repo, commit, event)
        if kind == "locks" and not event.deleted:
            return [ReleaseIdleLocks()] if _fields(event).get("node") == self.node_id else []
        if kind == "local" and event.deleted and (self.deleted or self.pruned):
            node, _, record = rest.partition("/")
            if node == self.node_id and record.startswith("mounts/"):
                work: list[Work] = [PurgeDeleted()] if self.deleted else []
                return work + [DropPruned(repo) for repo in sorted(self.pruned)]
        return []

    def _node(self, node: str, event: WatchEvent) -> list[Work]:
        # A live node rewrites its key at every lease renewal: only a node coming or
        # going changes membership.
        if event.deleted and node in self.live:
            self.live.discard(node)
            return [Replace()]
        if not event.deleted and node not in self.live:
            self.live.add(node)
            # A node that comes back (a restart, a pause past its lease, a partition
            # healed) may be the only holder of commits this node tried and failed to
            # copy while it was away: nothing else would ask again before the sweep.
            return [Replace(), *(CopyRepo(r.name) for r in self._placed_here())]
        return []

    def _placed_here(self) -> list[RepoPlacement]:
        return sorted(
            (r for r in self.repos.values() if self.node_id in r.placement),
            key=lambda r: r.name,
        )

    def _repo(self, name: str, event: WatchEvent) -> list[Work]:
        before = self.repos.pop(name, None)
        if event.deleted:
            self.deleted.add(name)
            return [PurgeDeleted()]
        self.deleted.discard(name)
        fields = _fields(event)
        replicas = fields.get("replicas")
        nodes = fields.get("placement")
        now = RepoPlacement(
            name,
            replicas if isinstance(replicas, int) and replicas > 0 else 1,
            tuple(n for n in nodes if isinstance(n, str)) if isinstance(nodes, list) else (),
        )
        self.repos[name] = now
        work: list[Work] = []
        if self.live and placement.repair(name, now.placement, self.live, now.replicas) != (
            now.placement
        ):
            work.append(Replace())
        if self.node_id in now.placement and (
            before is None or self.node_id not in before.placement
        ):
            work.append(CopyRepo(name))
        return work

    def _commit(self, repo: str, commit: str, event: WatchEvent) -> list[Work]:
        fields = _fields(event)
        holders = fields.get("holders")
        holders = holders if isinstance(holders, list) else []
        if fields.get("pruned"):
            self.pruned.add(repo)
            work: list[Work] = [DropPruned(repo)]
            if self.node_id in holders:
                work.insert(0, Unlist(repo, commit))
            return work
        known = self.repos.get(repo)
        if known is not None and self.node_id in known.placement and self.node_id not in holders:
            return [Fetch(repo, commit)]
        return []


def _utf8(key: str) -> bool:
    """True when the key was UTF-8 (a watch decodes any other byte as a surrogate)."""
    try:
        key.encode()
    except UnicodeEncodeError:
        return False
    return True


def _fields(event: WatchEvent) -> dict[str, Any]:
    """A record's JSON object ({} for anything else)."""
    try:
        value = json.loads(event.value)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
