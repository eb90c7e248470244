"""Start-up of ``pfs serve`` and ``pfs fsck`` at 10,000 and 100,000 commits.

The pool is built directly, not through 100,000 API calls: REPOS repos, each a chain of
commits whose snapshots are read-only snapshots of an empty working copy (one ioctl each,
a few ms), and their records written in one import per repo (SQLite, or etcd with
``--cluster``). The pool image is formatted with 4 KiB metadata nodes and single
metadata, so 100,000 subvolumes take about 0.5 GB of disk instead of several.

Then it times ``pfs serve`` from launch until the plugin answers ``Plugin.Activate``
(and the API socket answers at all: 503 while starting), and until a volume call
(``VolumeDriver.List``) succeeds, STARTS times, and ``pfs fsck --json`` once.
``--baseline-tree DIR`` (e.g. ``git archive main | tar -x -C DIR``) times that code on
the same pool too (it has no fsck).

Targets: start-up <= 2 s at 100,000 commits on one host, <= 5 s in a cluster.

Run as root from the repo root:
    PYTHONPATH=$PWD .venv/bin/python bench/startup_scale.py [--sizes 10000,100000]
        [--cluster] [--baseline-tree DIR]
Building 100,000 snapshots takes about 7 minutes on a loop device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
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
    run,
    table,
    write_results,
)
from pfs_volume.btrfs import ioctl
from pfs_volume.btrfs.pool_image import IMAGE_NAME, MOUNT_NAME
from pfs_volume.meta import BranchRecord, CommitRecord, MetadataStore, RepoRecord
from pfs_volume.meta.sqlite import SqliteStore
from tests import pfs_node
from tests.pfs_node import PfsNode, unique_driver_name

REPOS = 10
STARTS = 3
NODE_ID = "bench-node"
IMAGE_SIZE = 16 * 1024**3
TARGETS = {"single host": 2.0, "cluster": 5.0}
SNAPSHOT_THREADS = 4
POLL = 0.01
"""Seconds between List calls while the daemon starts."""


def build_pool(state: Path, commits: int) -> dict[str, list[CommitRecord]]:
    """Make and mount the pool image with ``commits`` snapshots over REPOS repos; the
    commit records per repo (not written yet)."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    image, root = state / IMAGE_NAME, state / MOUNT_NAME
    with open(image, "wb") as handle:
        handle.truncate(IMAGE_SIZE)
    os.chmod(image, 0o600)
    run(["mkfs.btrfs", "-q", "-f", "-m", "single", "-n", "4096", str(image)])
    root.mkdir(mode=0o700, exist_ok=True)
    run(["mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(root)])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records: dict[str, list[CommitRecord]] = {}
    jobs: list[tuple[Path, Path]] = []
    for r in range(REPOS):
        repo = f"repo{r}"
        top = root / "repos" / repo
        (top / "branches").mkdir(parents=True)
        (top / "commits").mkdir()
        run(["btrfs", "subvolume", "create", str(top / "branches" / "master")])
        chain: list[CommitRecord] = []
        parent = None
        for i in range(commits // REPOS):
            commit_id = f"{r:04x}{i:028x}"
            chain.append(
                CommitRecord(
                    commit_id,
                    repo,
                    "master",
                    parent,
                    start + timedelta(seconds=i),
                    f"commit {i}",
                    "bench",
                    holders=(NODE_ID,),
                )
            )
            jobs.append((top / "branches" / "master", top / "commits" / commit_id))
            parent = commit_id
        records[repo] = chain
    began = time.monotonic()
    with ThreadPoolExecutor(SNAPSHOT_THREADS) as pool:
        for done, _ in enumerate(
            pool.map(lambda job: ioctl.snapshot(job[0], job[1], readonly=True), jobs), 1
        ):
            if done % 10_000 == 0:
                print(f"    {done:,} snapshots ({time.monotonic() - began:.0f} s)", flush=True)
    return records


def write_records(store: MetadataStore, root: Path, records: dict[str, list[CommitRecord]]) -> None:
    """Write the repos, their master branches (clean at the head) and commits."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for repo, chain in records.items():
        generation = ioctl.subvolume_info(root / "repos" / repo / "branches" / "master")
        head = chain[-1].id if chain else None
        store.import_repo(
            RepoRecord(repo, when, placement=(NODE_ID,)),
            [BranchRecord(repo, "master", head, when, generation.generation, head)],
            chain,
        )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far: unlike the wall clock, it
    hardly depends on what else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_start(node: PfsNode, env: dict[str, str]) -> tuple[float, float]:
    """Launch the daemon; seconds until its plugin socket answers ``Plugin.Activate``
    (and the API socket answers at all), and until a volume call (List) succeeds."""
    began = time.perf_counter()
    node.start(env=env, ready=False)
    activate = time.perf_counter() - began
    while "Err" in node.plugin("VolumeDriver.List"):
        time.sleep(POLL)
    return activate, time.perf_counter() - began


def time_starts(node: PfsNode, tree: Path | None) -> tuple[list[float], list[float], list[float]]:
    """Seconds from launch until the plugin answers Activate, until volume calls
    succeed, and the CPU seconds the daemon used until then, STARTS times (the daemon
    stopped in between). Code from before the plugin socket listened first answers
    both at once."""
    env = {"PYTHONPATH": str(tree or Path.cwd())}
    activate, ready, cpu = [], [], []
    for _ in range(STARTS):
        first, last = time_start(node, env)
        activate.append(first)
        ready.append(last)
        assert node.process is not None
        cpu.append(cpu_seconds(node.process.pid))
        node.stop()
    return activate, ready, cpu


def time_fsck(node: PfsNode) -> tuple[float, dict[str, Any]]:
    """Seconds ``pfs fsck --json`` took on a running daemon, and its report."""
    node.start(env={"PYTHONPATH": str(Path.cwd())})
    try:
        began = time.perf_counter()
        done = node.cli("fsck", "--json", check=False)
        return time.perf_counter() - began, json.loads(done.stdout)
    finally:
        node.stop()


def measure(size: int, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="pfsbench-startup-", dir=args.state_parent))
    etcd = None
    node_args = ["--node-id", NODE_ID]
    try:
        print(f"  building {size:,} commits ({mode})", flush=True)
        began = time.monotonic()
        records = build_pool(state, size)
        root = state / MOUNT_NAME
        if mode == "cluster":
            from pfs_volume.meta.etcd import EtcdStore
            from pfs_volume.meta.etcd_client import EtcdClient
            from tests.etcd_cluster import EtcdCluster, free_port

            etcd = EtcdCluster(state / "etcd", members=1).start()
            client = EtcdClient(etcd.endpoints)
            write_records(EtcdStore(client, NODE_ID), root, records)
            client.close()
            port = free_port()
            node_args += [
                "--etcd",
                ",".join(etcd.endpoints),
                "--advertise",
                f"http://127.0.0.1:{port}",
                "--cluster-token",
                "bench-cluster-token-0123456789",
                "--replicas",
                "1",
            ]
        else:
            store = SqliteStore(root / "meta.db", NODE_ID)
            write_records(store, root, records)
            store.close()
        print(f"  built in {time.monotonic() - began:.0f} s", flush=True)
        node = PfsNode(state, unique_driver_name("pfsbench"), pool_size="16G", args=node_args)
        result: dict[str, Any] = {"load average": load_average()}
        codes: dict[str, Path | None] = {"after": None}
        if args.baseline_tree is not None:
            codes = {"before": args.baseline_tree.resolve(), **codes}
        for label, tree in codes.items():
            activate, samples, cpu = time_starts(node, tree)
            result[f"activate {label}"] = activate
            result[f"start {label}"] = samples
            result[f"cpu {label}"] = cpu
            print(
                f"    Activate ({label}): {', '.join(fmt_seconds(s) for s in activate)}; "
                f"volume calls: {', '.join(fmt_seconds(s) for s in samples)}; CPU "
                f"{', '.join(fmt_seconds(s) for s in cpu)}",
                flush=True,
            )
        if args.skip_fsck:
            node.cleanup()
            return result
        seconds, report = time_fsck(node)
        result["fsck"] = seconds
        result["fsck problems"] = len(report.get("problems", []))
        result["fsck commits"] = report.get("commits")
        print(f"    fsck: {fmt_seconds(seconds)} ({result['fsck problems']} problems)", flush=True)
        result["load average after"] = load_average()
        node.cleanup()
        return result
    finally:
        if etcd is not None:
            etcd.cleanup()
        root = state / MOUNT_NAME
        if os.path.ismount(root):
            run(["umount", str(root)])
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--cluster", action="store_true", help="etcd instead of SQLite")
    parser.add_argument("--baseline-tree", type=Path, help="also time this checkout")
    parser.add_argument("--state-parent", type=Path, default=None)
    parser.add_argument("--skip-fsck", action="store_true", help="code without fsck")
    args = parser.parse_args()
    require_root()
    pfs_node.START_TIMEOUT = 600.0
    mode = "cluster" if args.cluster else "single host"
    sizes = [int(s) for s in args.sizes.split(",")]
    notes = machine_notes(Path(tempfile.gettempdir()))
    print(f"pfs serve start-up and pfs fsck by number of commits ({mode})")
    print_notes(notes)
    results: dict[str, Any] = {"mode": mode, "sizes": {}}
    for size in sizes:
        results["sizes"][size] = measure(size, args, mode)
    rows = []
    labels = [
        k for k in results["sizes"][sizes[0]] if k.startswith(("activate ", "start ", "cpu "))
    ]
    for label in labels:
        medians = [median(results["sizes"][n][label]) for n in sizes]
        growth = fmt_ratio(medians[-1] / medians[0]) if len(sizes) > 1 else "-"
        rows.append([label, *(fmt_seconds(m) for m in medians), growth])
    if not args.skip_fsck:
        fsck = [results["sizes"][n]["fsck"] for n in sizes]
        rows.append(["fsck", *(fmt_seconds(s) for s in fsck), "-"])
    print()
    print(table(["", *(f"{n:,} commits" for n in sizes), "growth"], rows))
    target = TARGETS[mode]
    print(f"target: start-up <= {target:.0f} s at {sizes[-1]:,} commits")
    results["notes"] = {**notes, "load average at end": load_average()}
    print(f"\nresults: {write_results('startup_scale', results)}")


if __name__ == "__main__":
    main()
