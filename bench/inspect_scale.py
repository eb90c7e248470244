"""``pfs repo inspect`` at 10,000 and 100,000 commits: the size kept in the store, against
``btrfs filesystem du`` over every snapshot (what inspect ran before).

* before: on a private loop-mounted pool, a repo folder laid out as pfs lays it out (a
  working copy of 100 files of 4 KiB, and one read-only snapshot per commit, each after
  rewriting one file); ``BtrfsPool.disk_usage`` of it (``btrfs filesystem du -s``) with
  200 and 2,000 snapshots. 100,000 real snapshots would take hours to make, so its growth
  factor is measured here and 100,000 is extrapolated linearly (du reads every
  snapshot's every extent: linear in snapshots times files).
* after: ``RepoService.summary`` plus its JSON (what ``GET /v1/repos/R`` runs, less
  flask) over repos of N and 10N commit records written directly (as
  ``bench/log_scale.py`` writes them), on a private etcd and on SQLite.

    PYTHONPATH=. .venv/bin/python bench/inspect_scale.py [--small 10000] [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench._common import (
    fmt_ratio,
    fmt_seconds,
    load_average,
    median,
    require_root,
    table,
    timed,
    write_results,
)
from bench.log_scale import fill
from pfs_volume.api.serialize import summary_json
from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.meta import EtcdClient, EtcdStore, MetadataStore, SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.repos.parts import RepoParts
from tests.etcd_cluster import EtcdCluster

POOL_SIZE = 4 * 1024**3
SNAPSHOTS = (200, 2000)
FILES = 100
TARGET = 0.100


def du_baseline(pool: BtrfsPool) -> dict[str, float]:
    """Seconds of ``disk_usage`` over a repo folder with each count of snapshots."""
    repo = pool.root / "du-bench"
    work = repo / "branches" / "master"
    (repo / "branches").mkdir(parents=True)
    (repo / "commits").mkdir()
    pool.create_subvolume(work)
    for n in range(FILES):
        (work / f"f{n}").write_bytes(bytes([n % 251]) * 4096)
    out: dict[str, float] = {}
    made = 0
    for count in SNAPSHOTS:
        while made < count:
            (work / f"f{made % FILES}").write_bytes(made.to_bytes(4, "big") * 1024)
            pool.snapshot(work, repo / "commits" / f"c{made:06d}", readonly=True)
            made += 1
        out[str(count)] = median([timed(lambda: pool.disk_usage(repo)) for _ in range(3)])
    return out


def summary_times(
    service: RepoService, store: MetadataStore, sizes: list[int], runs: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for count in sizes:
        repo = f"r{count}"
        fill(store, repo, count)
        for n in range(0, count, 97):  # some measured (the rest count as unmeasured)
            store.record_commit_size(repo, f"{n:08x}{'c' * 24}", 4096)
        out[str(count)] = median(
            [timed(lambda: summary_json(service.summary(repo))) for _ in range(runs)]  # noqa: B023
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    require_root()
    sizes = [args.small, args.small * 10]
    results: dict[str, object] = {"load_start": load_average(), "sizes": sizes}
    scratch = Path(tempfile.mkdtemp(prefix="pfs-inspect-bench-"))
    root, image = prepare_pool(scratch / "state", POOL_SIZE)
    cluster = EtcdCluster(scratch / "etcd", members=1).start()
    client = EtcdClient(cluster.endpoints)
    try:
        pool = BtrfsPool(root)
        results["du"] = du_baseline(pool)
        etcd = EtcdStore(client, "node-a", "/bench")
        results["etcd"] = summary_times(
            RepoService.over(RepoParts.build(etcd, pool)), etcd, sizes, args.runs
        )
        sqlite = SqliteStore(scratch / "meta.db", "node-a")
        try:
            service = RepoService.over(RepoParts.build(sqlite, pool))
            results["sqlite"] = summary_times(service, sqlite, sizes, args.runs)
        finally:
            sqlite.close()
    finally:
        client.close()
        cluster.cleanup()
        if image is not None:
            image.unmount()
        shutil.rmtree(scratch, ignore_errors=True)
    results["load_end"] = load_average()
    report(results, sizes)


def report(results: dict[str, object], sizes: list[int]) -> None:
    du = results["du"]
    assert isinstance(du, dict)
    small, large = du[str(SNAPSHOTS[0])], du[str(SNAPSHOTS[1])]
    per_snapshot = large / SNAPSHOTS[1]
    rows = [
        [
            "before: btrfs filesystem du",
            f"{SNAPSHOTS[0]:,}: {fmt_seconds(small)}",
            f"{SNAPSHOTS[1]:,}: {fmt_seconds(large)}",
            fmt_ratio(large / small),
            f"~{fmt_seconds(per_snapshot * sizes[1])} (linear)",
        ]
    ]
    met = True
    for backend in ("etcd", "sqlite"):
        times = results[backend]
        assert isinstance(times, dict)
        a, b = times[str(sizes[0])], times[str(sizes[1])]
        met = met and b <= TARGET
        rows.append(
            [
                f"after, {backend}: summary",
                f"{sizes[0]:,}: {fmt_seconds(a)}",
                f"{sizes[1]:,}: {fmt_seconds(b)}",
                fmt_ratio(b / a),
                fmt_seconds(b),
            ]
        )
    print(table(["", "small", "10x", "growth", f"at {sizes[1]:,} commits"], rows))
    results["target_met"] = met
    print(f"target (<= 100 ms at {sizes[1]:,} commits): {'met' if met else 'MISSED'}")
    print(f"load average: {results['load_start']} -> {results['load_end']}")
    print("results:", write_results("inspect_scale", results))


if __name__ == "__main__":
    main()
