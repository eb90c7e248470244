"""``pfs log REPO --limit 50`` at 10,000 and 100,000 commits, on etcd and SQLite.

Builds each repo's commit records by direct store writes (no snapshots: log reads only
metadata): a master line with a side branch merged into it every tenth commit. Times
``Refs.log`` (what the API's log endpoint runs) with every parent and with first parents
only, against the walk it replaced (one ``get_commit`` per parent, kept here as
``old_walk``), and reports the growth factor from N to 10N measured in one run.

    PYTHONPATH=. .venv/bin/python bench/log_scale.py [--small 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import heapq
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from bench._common import fmt_ratio, fmt_seconds, load_average, median, table, timed, write_results
from pfs_volume.meta import (
    BranchRecord,
    CommitRecord,
    EtcdClient,
    EtcdStore,
    MetadataStore,
    RepoRecord,
    SqliteStore,
)
from pfs_volume.meta.etcd_client import MAX_TXN_OPS, put_op
from pfs_volume.meta.etcd_keys import commit_json
from pfs_volume.names import parse_ref
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.snapshots import Snapshots
from tests.etcd_cluster import EtcdCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = 50
TARGET = 0.020


def graph(repo: str, count: int) -> tuple[list[CommitRecord], dict[str, str]]:
    """``count`` commits: master, a side branch every 10th, merged every 10th."""
    heads: dict[str, str | None] = {"master": None, "dev": None}
    commits = []
    for n in range(count):
        branch = "dev" if n % 10 == 5 else "master"
        parent = heads[branch] or heads["master"]
        dev = heads["dev"]
        merged: tuple[str, ...] = (dev,) if n % 10 == 9 and dev else ()
        commit = CommitRecord(
            id=f"{n:08x}{'c' * 24}",
            repo=repo,
            branch=branch,
            parent=parent,
            created=T0 + timedelta(milliseconds=n),
            message=f"commit {n}",
            origin="bench",
            holders=("node-a",),
            merge_parents=merged,
        )
        commits.append(commit)
        heads[branch] = commit.id
    return commits, {b: h for b, h in heads.items() if h}


def fill(store: MetadataStore, repo: str, count: int) -> None:
    commits, heads = graph(repo, count)
    record = RepoRecord(name=repo, created=T0)
    branches = [BranchRecord(repo, b, h, T0) for b, h in heads.items()]
    if isinstance(store, SqliteStore):
        store.import_repo(record, branches, commits)
        return
    assert isinstance(store, EtcdStore)
    store.create_repo(record, replace(branches[0], head=None))
    ops = []
    for c in commits:
        ops += [put_op(store.keys.commit(repo, c.id), commit_json(c)), store.log_entry_op(c)]
    ops.append(store.size_start_op(repo, 0, len(commits)))  # the count finish_commit keeps
    for start in range(0, len(ops), MAX_TXN_OPS):
        store.client.txn([], ops[start : start + MAX_TXN_OPS])
    store.move_head(repo, "master", None, heads["master"])


def old_walk(store: MetadataStore, repo: str, start: str, limit: int) -> list[str]:
    """The log walk before the index: one ``get_commit`` per parent."""
    head = store.get_commit(repo, start)
    assert head is not None
    out: list[str] = []
    seen = {head.id}
    queue = [(-head.created.timestamp(), head.id, head)]
    while queue and len(out) < limit:
        current = heapq.heappop(queue)[2]
        out.append(current.id)
        for parent_id in current.parents:
            if parent_id not in seen:
                seen.add(parent_id)
                parent = store.get_commit(repo, parent_id)
                assert parent is not None
                heapq.heappush(queue, (-parent.created.timestamp(), parent.id, parent))
    return out


def measure_one(store: MetadataStore, refs: Refs, repo: str, runs: int) -> dict[str, float]:
    master = parse_ref("master")
    head = store.get_branch(repo, "master")
    assert head is not None and head.head is not None
    start = head.head
    new = [c.id for c in refs.log(repo, master, LIMIT)]
    assert new == old_walk(store, repo, start, LIMIT), "the walks disagree"
    all_parents = [timed(lambda: refs.log(repo, master, LIMIT)) for _ in range(runs)]
    first = [timed(lambda: refs.log(repo, master, LIMIT, first_parent=True)) for _ in range(runs)]
    old = [timed(lambda: old_walk(store, repo, start, LIMIT)) for _ in range(5)]
    return {
        "log_all_parents_s": median(all_parents),
        "log_first_parent_s": median(first),
        "old_walk_s": median(old),
    }


def measure(store: MetadataStore, tmp: Path, sizes: list[int], runs: int) -> dict[str, object]:
    refs = Refs(store, PoolLayout(tmp), cast(Snapshots, None))
    out: dict[str, object] = {}
    for count in sizes:
        repo = f"r{count}"
        build = timed(lambda: fill(store, repo, count))  # noqa: B023 - called at once
        out[str(count)] = {"build_s": build, **measure_one(store, refs, repo, runs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sizes = [args.small, args.small * 10]
    results: dict[str, object] = {"load_start": load_average(), "sizes": sizes}
    with tempfile.TemporaryDirectory(prefix="pfs-log-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = EtcdCluster(tmp / "etcd", members=1).start()
        client = EtcdClient(cluster.endpoints)
        try:
            results["etcd"] = measure(EtcdStore(client, "node-a", "/bench"), tmp, sizes, args.runs)
        finally:
            client.close()
            cluster.cleanup()
        sqlite = SqliteStore(tmp / "meta.db", "node-a")
        try:
            results["sqlite"] = measure(sqlite, tmp, sizes, args.runs)
        finally:
            sqlite.close()
    results["load_end"] = load_average()
    rows = []
    for backend in ("etcd", "sqlite"):
        data = cast(dict[str, dict[str, float]], results[backend])
        small, large = data[str(sizes[0])], data[str(sizes[1])]
        for key, label in (
            ("log_all_parents_s", "log --limit 50"),
            ("log_first_parent_s", "log --limit 50 --first-parent"),
            ("old_walk_s", "old walk (a read per commit)"),
        ):
            rows.append(
                [
                    f"{backend}: {label}",
                    fmt_seconds(small[key]),
                    fmt_seconds(large[key]),
                    fmt_ratio(large[key] / small[key]),
                ]
            )
    print(table(["", f"N={sizes[0]:,}", f"N={sizes[1]:,}", "growth"], rows))
    etcd_large = cast(dict[str, dict[str, float]], results["etcd"])[str(sizes[1])]
    ok = etcd_large["log_all_parents_s"] <= TARGET and etcd_large["log_first_parent_s"] <= TARGET
    results["target_met"] = ok
    print(f"target (etcd, {sizes[1]:,} commits, <= 20 ms): {'met' if ok else 'MISSED'}")
    print(f"load average: {results['load_start']} -> {results['load_end']}")
    print("results:", write_results("log_scale", results))


if __name__ == "__main__":
    main()
