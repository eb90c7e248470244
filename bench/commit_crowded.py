"""Commit-on-unmount latency in a pool crowded with snapshots against a fresh pool.

Two private daemons (tests/pfs_node.py, unique driver names), each on its own pool image
formatted the same way (``startup_scale.build_pool``): one holds --snapshots read-only
commit snapshots with their records (10 repos of chained commits), the other none. Each
gets a repo of --files files (10 MiB in all), committed once; then, for --runs rounds,
one file is rewritten with 1 MiB of new bytes in each, the data is synced, and the
Unmount that commits it is timed, the two pools taking turns in every round so that a
busy machine weighs on both alike.

Target: the crowded pool's median within 1.5x of the fresh pool's.

Run as root from the repo root:
    PYTHONPATH=$PWD .venv/bin/python bench/commit_crowded.py [--snapshots 50000]
Building 50,000 snapshots takes a few minutes on a loop device.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    fmt_ratio,
    fmt_seconds,
    load_average,
    machine_notes,
    median,
    print_notes,
    require_root,
    table,
    timed,
    verdict,
    write_results,
)
from bench.commit_latency import Pfs, make_files, rewrite, settle
from bench.startup_scale import NODE_ID, build_pool, write_records
from pfs_volume.btrfs.pool_image import MOUNT_NAME
from pfs_volume.meta.sqlite import SqliteStore
from tests.pfs_node import PfsNode, unique_driver_name

TARGET = 1.5
DATA = 10 * 1024**2


def crowd(state: Path, snapshots: int) -> PfsNode:
    """A daemon on a pool built with ``snapshots`` commit snapshots and their records."""
    records = build_pool(state, snapshots)
    store = SqliteStore(state / MOUNT_NAME / "meta.db", NODE_ID)
    write_records(store, state / MOUNT_NAME, records)
    store.close()
    node = PfsNode(
        state, unique_driver_name("pfsbench"), pool_size="16G", args=["--node-id", NODE_ID]
    )
    node.start()
    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--state-parent", type=Path, default=None)
    args = parser.parse_args()
    require_root()
    started = time.monotonic()
    states = {
        label: Path(tempfile.mkdtemp(prefix=f"pfsbench-crowded-{label}-", dir=args.state_parent))
        for label in ("fresh", "crowded")
    }
    nodes: dict[str, PfsNode] = {}
    try:
        for label, count in (("fresh", 0), ("crowded", args.snapshots)):
            print(f"  building the {label} pool ({count:,} snapshots)", flush=True)
            began = time.monotonic()
            nodes[label] = crowd(states[label], count)
            print(f"  built in {time.monotonic() - began:.0f} s", flush=True)
        notes = machine_notes(states["fresh"])
        print("commit on unmount: a pool of many snapshots vs a fresh one")
        print_notes(notes)
        files = make_files(DATA, args.files)
        tools = {label: Pfs(node, "crowd", args.runs) for label, node in nodes.items()}
        for tool in tools.values():
            tool.new_wc(files)
            tool.commit()
            tool.verify()
        samples: dict[str, list[float]] = {label: [] for label in tools}
        for rep in range(args.runs):
            for label, tool in tools.items():
                rewrite(tool.reopen() / files[0][0], rep)
                settle(nodes[label].pool_root)
                samples[label].append(timed(tool.commit))
                tool.verify()
        fresh, crowded = median(samples["fresh"]), median(samples["crowded"])
        ratio = crowded / fresh
        print(
            table(
                ["pool", "snapshots", "median", "min", "max"],
                [
                    [
                        label,
                        f"{0 if label == 'fresh' else args.snapshots:,}",
                        fmt_seconds(median(s)),
                        fmt_seconds(min(s)),
                        fmt_seconds(max(s)),
                    ]
                    for label, s in samples.items()
                ],
            )
        )
        print(
            f"crowded / fresh: {fmt_ratio(ratio)} (target <= {TARGET}x: {verdict(ratio <= TARGET)})"
        )
        notes["load average at end"] = load_average()
        print(f"load average at end: {notes['load average at end']}")
        result: dict[str, Any] = {
            "machine": notes,
            "snapshots": args.snapshots,
            "samples": samples,
            "ratio": ratio,
            "elapsed_s": time.monotonic() - started,
        }
        print(f"results: {write_results('commit_crowded', result)}")
    finally:
        for node in nodes.values():
            node.cleanup()
        for state in states.values():
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
