"""A simulated pfs cluster for placement and repair at scale: many nodes, no pools.

Each simulated node is the product's own cluster code on a real etcd, without btrfs:

* a real ``NodeRegistry`` (its key under a lease it keeps alive; killing a node revokes
  the lease or lets it expire);
* repos placed by ``ClusterCoordinator.place`` (rendezvous over the live nodes bounded
  by the loads read from the repo records, as ``Catalog.create_repo`` does; or plain
  rendezvous, for comparison) and stored with ``EtcdStore``, each with one commit whose
  holders are its replica set (as if pushed already), from one node or several at once
  (each with its own view of the loads, so that their creates race);
* the repair pass's decision (``placement.repair_plan`` over ``list_repos`` and the live
  nodes, written by ``EtcdStore.set_placement`` compare-and-swap), then what
  ``Replicator.repair`` does with it (``settle_placement``: a node that lost the race
  takes the placement written instead of its own), and then, as ``Replicator.repair``
  does on a node with a pool, every node in the repo's wanted set fetches each commit
  it does not hold. Only that fetch's byte stream is left out: the node records itself
  as a holder (``add_holder``) as a fetch does once its copy is whole.

Used by ``tests/cluster/test_placement_sim.py`` and ``bench/placement_sim.py``.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pfs_volume.cluster import placement
from pfs_volume.cluster.coordinator import ClusterCoordinator
from pfs_volume.cluster.locks import BranchLocks
from pfs_volume.cluster.membership import NodeRegistry
from pfs_volume.cluster.replication import settle_placement
from pfs_volume.meta import BranchRecord, CommitRecord, EtcdClient, EtcdStore, RepoRecord, utcnow
from pfs_volume.meta.codec import commit_from
from pfs_volume.meta.etcd_keys import load

SPACE = (1 << 30, 1 << 30)
LIVE_TIMEOUT = 30.0
"""Seconds to wait for the list of live nodes to reach an expected size (lease expiry
takes the TTL plus etcd's lease checkpoint delay)."""


@dataclass(frozen=True)
class Balance:
    """Replicas per node over the given nodes."""

    counts: dict[str, int]

    @property
    def mean(self) -> float:
        return statistics.mean(self.counts.values())

    @property
    def max_over_mean(self) -> float:
        return max(self.counts.values()) / self.mean

    @property
    def min_over_mean(self) -> float:
        return min(self.counts.values()) / self.mean


def balance(placements: Iterable[tuple[str, ...]], nodes: Iterable[str]) -> Balance:
    """How many of ``placements`` each of ``nodes`` is in (nodes in none count 0)."""
    counts = Counter({node: 0 for node in nodes})
    for nodes_of_repo in placements:
        counts.update(node for node in nodes_of_repo if node in counts)
    return Balance(dict(counts))


@dataclass
class RepairReport:
    """What the simulated repair passes did."""

    written: int = 0
    """Placements changed (compare-and-swaps won)."""
    lost_races: int = 0
    """Compare-and-swaps another node won first."""
    copies: list[tuple[str, str]] = field(default_factory=list)
    """(repo, node) for every commit copy made."""
    seconds: float = 0.0
    guard: threading.Lock = field(default_factory=threading.Lock)


class CountingStore(EtcdStore):
    """An EtcdStore that counts its placement writes into the current repair report."""

    report: RepairReport | None = None

    def set_placement(self, repo: str, expected: tuple[str, ...], new: tuple[str, ...]) -> bool:
        won = super().set_placement(repo, expected, new)
        if self.report is not None:
            with self.report.guard:
                self.report.written += won
                self.report.lost_races += not won
        return won


class SimCluster:
    """``nodes`` simulated nodes on the etcd at ``endpoints``, under a prefix of their own.

    Args:
        endpoints: etcd client URLs.
        nodes: how many nodes.
        ttl: their lease TTL in seconds.
        replicas: the default replica count.
        creators: how many nodes create repos (each places by its own loads view).
        load_aware: False places by plain rendezvous (what placement was before loads).
    """

    def __init__(
        self,
        endpoints: list[str],
        nodes: int,
        ttl: int = 3,
        replicas: int = 2,
        creators: int = 1,
        load_aware: bool = True,
    ):
        self.client = EtcdClient(endpoints)
        self.prefix = f"/pfs-sim-{secrets.token_hex(4)}"
        self.ids = [f"node{i:02d}" for i in range(nodes)]
        self.registries = {
            node: NodeRegistry(
                self.client, node, f"http://sim.invalid/{node}", lambda: SPACE, ttl, self.prefix
            )
            for node in self.ids
        }
        self.stores = {node: CountingStore(self.client, node, self.prefix) for node in self.ids}
        self.coordinators = [
            ClusterCoordinator(
                self.registries[node],
                BranchLocks(self.client, self.registries[node], self.prefix),
                replicas,
                repos=self.stores[node].list_repos if load_aware else None,
            )
            for node in self.ids[: max(creators, 1)]
        ]
        self.coordinator = self.coordinators[0]

    def start(self) -> SimCluster:
        """Register every node (each keeps its lease alive from then on). Returns self."""
        for registry in self.registries.values():
            registry.start()
        self.wait_live(len(self.ids))
        return self

    def stop(self) -> None:
        """Stop every node still running (their leases revoked) and close the client."""
        for registry in self.registries.values():
            registry.stop(revoke=True)
        self.client.close()

    def live(self) -> list[str]:
        """The live nodes' ids, as membership lists them."""
        return [node.id for node in self.coordinator.registry.live_nodes()]

    def wait_live(self, count: int) -> list[str]:
        """Wait until exactly ``count`` nodes are live; their ids. Raises TimeoutError."""
        deadline = time.monotonic() + LIVE_TIMEOUT
        while len(live := self.live()) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} nodes live after {LIVE_TIMEOUT} s, not {count}")
            time.sleep(0.1)
        return live

    def create_repos(self, count: int, threads: int = 4) -> None:
        """Create ``count`` repos, placed as ``Catalog.create_repo`` places them, each with
        one commit its replica set holds."""

        def create(index: int) -> None:
            name = f"repo{index:05d}"
            coordinator = self.coordinators[index % len(self.coordinators)]
            chosen = coordinator.place(name, None)
            now = utcnow()
            commit = CommitRecord(
                id=f"{index:032x}",
                repo=name,
                branch="master",
                parent=None,
                created=now,
                message="",
                origin="sim",
                holders=chosen.nodes,
            )
            record = RepoRecord(name, now, replicas=chosen.replicas, placement=chosen.nodes)
            master = BranchRecord(name, "master", head=commit.id, created=now)
            self.stores[coordinator.node_id].import_repo(record, [master], [commit])

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, range(count)))

    def kill(self, nodes: Iterable[str], revoke: bool) -> None:
        """Stop ``nodes`` renewing: their leases are revoked now, or expire after the TTL."""
        for node in nodes:
            self.registries[node].stop(revoke=revoke)

    def placements(self) -> dict[str, tuple[str, ...]]:
        """Every repo's stored replica set."""
        return {repo.name: repo.placement for repo in self.stores[self.ids[0]].list_repos()}

    def holders(self) -> dict[str, tuple[str, ...]]:
        """Every repo's commit holders (each repo has one commit)."""
        found = {}
        for repo, commits in commits_by_repo(self.stores[self.ids[0]]).items():
            (commit,) = commits
            found[repo] = commit.holders
        return found

    def repair(self, nodes: Iterable[str], threads: int = 4) -> RepairReport:
        """One repair pass on each of ``nodes``, several at once (so their writes race)."""
        report = RepairReport()
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda node: self.repair_pass(node, report), nodes))
        report.seconds = time.perf_counter() - start
        return report

    def repair_pass(self, node: str, report: RepairReport) -> None:
        """What ``Replicator.repair`` decides and writes on ``node``, the fetch's bytes
        left out."""
        store = self.stores[node]
        store.report = report
        live = [info.id for info in self.registries[node].live_nodes()]
        repos = store.list_repos()
        by_name = {repo.name: repo for repo in repos}
        wanted_by_repo: dict[str, tuple[str, ...] | None] = {}
        for move in placement.repair_plan(repos, live):
            wanted_by_repo[move.repo] = settle_placement(
                store, by_name[move.repo], move.after, live
            )
        commits = commits_by_repo(store)
        for repo in repos:
            wanted = wanted_by_repo.get(repo.name, repo.placement)
            if wanted is None or node not in wanted:
                continue
            for commit in commits.get(repo.name, []):
                if commit.pruned or node in commit.holders:
                    continue
                store.add_holder(repo.name, commit.id, node)
                with report.guard:
                    report.copies.append((repo.name, node))


def commits_by_repo(store: EtcdStore) -> dict[str, list[CommitRecord]]:
    """Every commit record by repo, in one read: what ``list_commits`` gives for each repo
    (the same keys and codec), without a request per repo, which at this scale would be
    most of the simulation's time."""
    found: dict[str, list[CommitRecord]] = {}
    for kv in store.client.get_prefix(f"{store.prefix}/commits/"):
        repo = kv.key.split("/")[-2]
        found.setdefault(repo, []).append(commit_from(load(kv), repo))
    return found
