"""Branch-head compare-and-swap throughput: the embedded SQLite store against etcd.

Every commit moves a branch head by compare-and-swap (``MetadataStore.move_head``, or
``finish_commit`` which does the same in a larger transaction). This times N sequential
swaps on one branch through each backend:

    sqlite         SqliteStore on the pool (WAL, synchronous=FULL: one fsync per swap)
    etcd           EtcdStore against a real single-member etcd on the same pool: a read
                   of the head and a transaction comparing its mod revision (two round
                   trips, one raft commit, one fsync of etcd's WAL)
    etcd, fenced   the same with a fence: the transaction also compares the write lock
                   key's create revision, as a cluster node's commit does

The etcd member is started by the benchmark (``tests/etcd_cluster.py``), listens on
127.0.0.1 and keeps its data dir next to meta.db in a fresh loop-mounted btrfs pool, so
both backends fsync to the same file system. Medians of 3 runs; the backends take turns.

Run as root from the repo root:
    PYTHONPATH=/work/main .venv/bin/python bench/metadata_ops.py [--ops N]
Takes under a minute with the default N=2000.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import (
    fmt_ratio,
    load_average,
    machine_notes,
    median,
    print_notes,
    require_root,
    table,
    timed,
    write_results,
)
from pfs_volume.btrfs import prepare_pool
from pfs_volume.meta import (
    BranchRecord,
    EtcdClient,
    EtcdStore,
    Fence,
    MetadataStore,
    RepoRecord,
    SqliteStore,
    utcnow,
)
from tests.etcd_cluster import ETCD, EtcdCluster

DEFAULT_OPS = 2000
RUNS = 3
POOL_SIZE = 2 * 1024**3
LOCK_KEY = "/bench/locks/bench/master"


def commit_id(run: int, n: int) -> str:
    return f"{run:04x}{n:028x}"


def swaps(store: MetadataStore, run: int, ops: int, fence: Fence | None) -> Callable[[], None]:
    """A fresh repo for this run, and the action that makes ``ops`` swaps on its master."""
    name = f"bench{run}"
    now = utcnow()
    store.create_repo(RepoRecord(name, now), BranchRecord(name, "master", None, now))

    def action() -> None:
        head: str | None = None
        for n in range(ops):
            new = commit_id(run, n)
            store.move_head(name, "master", head, new, fence=fence)
            head = new

    return action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=DEFAULT_OPS, help="swaps per run")
    ops = parser.parse_args().ops
    require_root()
    scratch = Path(tempfile.mkdtemp(prefix="pfs-metadata-bench-"))
    root, image = prepare_pool(scratch / "state", POOL_SIZE)
    cluster = EtcdCluster(root / "etcd", members=1)
    client: EtcdClient | None = None
    sqlite: SqliteStore | None = None
    try:
        notes = machine_notes(root)
        notes["etcd"] = subprocess.run(
            [ETCD, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
        print("machine:")
        print_notes(notes)
        cluster.start()
        client = EtcdClient(cluster.endpoints)
        sqlite = SqliteStore(root / "meta.db")
        etcd = EtcdStore(client, "bench-node", prefix="/bench")
        client.put(LOCK_KEY, "bench-node")
        lock = client.get(LOCK_KEY)
        assert lock is not None
        fence = Fence(LOCK_KEY, lock.create_revision)
        backends: dict[str, tuple[MetadataStore, Fence | None]] = {
            "sqlite": (sqlite, None),
            "etcd": (etcd, None),
            "etcd, fenced": (etcd, fence),
        }
        samples: dict[str, list[float]] = {name: [] for name in backends}
        run = 0
        for round_ in range(RUNS):
            order = list(backends) if round_ % 2 == 0 else list(reversed(backends))
            for name in order:
                store, fenced = backends[name]
                run += 1
                samples[name].append(timed(swaps(store, run, ops, fenced)))
                print(f"  round {round_ + 1} {name}: {samples[name][-1]:.2f} s", flush=True)
    finally:
        if sqlite is not None:
            sqlite.close()
        if client is not None:
            client.close()
        cluster.cleanup()
        if image is not None:
            image.unmount()
        shutil.rmtree(scratch, ignore_errors=True)
    report(ops, samples, notes)


def report(ops: int, samples: dict[str, list[float]], notes: dict[str, str]) -> None:
    medians = {name: median(values) for name, values in samples.items()}
    sqlite = medians["sqlite"]
    rows = [
        [
            name,
            f"{ops / seconds:,.0f}",
            f"{seconds / ops * 1e6:,.0f} us",
            fmt_ratio(seconds / sqlite),
        ]
        for name, seconds in medians.items()
    ]
    print(f"\n{ops:,} sequential head swaps on one branch, median of {RUNS} runs:")
    print(table(["backend", "swaps/s", "per swap", "time vs sqlite"], rows))
    print(
        f"\nSQLite does {fmt_ratio(medians['etcd'] / sqlite)} the swaps etcd does per second "
        f"({fmt_ratio(medians['etcd, fenced'] / sqlite)} fenced)."
    )
    notes["load average at end"] = load_average()
    results: dict[str, Any] = {"ops": ops, "samples": samples, "medians": medians}
    path = write_results("metadata_ops", {"notes": notes, "results": results})
    print(f"\nraw samples: {path}")


if __name__ == "__main__":
    main()
