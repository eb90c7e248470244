"""Idle CPU of a pfs cluster and its etcd as the number of commit records grows.

A real single-member etcd (``tests/etcd_cluster.py``) and two real ``pfs serve`` nodes on
127.0.0.2 and 127.0.0.3, with ``--replicas 2``. Ten repos are made through node0's CLI
(so both nodes place and hold them), then N commit records in all are written straight
into etcd in batched transactions: chains of commits per repo, each listing both nodes as
holders. No snapshots are made: nothing idle reads a snapshot, and since both nodes are
listed holders, neither has anything to fetch, so the cluster's view is consistent and
every node is idle. (A node restarted now would unlist the missing copies at start-up;
the nodes are not restarted.)

After the records are written and the nodes have had ``SETTLE`` seconds, the CPU time of
each ``pfs serve`` process (with its children) and of etcd is read from
``/proc/<pid>/stat`` at the start and end of a ``WINDOW``-second window: CPU% is CPU
seconds / wall seconds * 100 (100% = one core).

    PYTHONPATH=$PWD .venv/bin/python bench/cluster_idle.py [--counts 10000,100000]
        [--window 30] [--sweep-interval S]

``--sweep-interval`` is passed to the nodes as ``--repair-sweep`` when given (a build
without that option would refuse it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    load_average,
    machine_notes,
    print_notes,
    require_root,
    table,
    write_results,
)
from pfs_volume.btrfs.pool_image import is_mountpoint
from pfs_volume.meta.etcd_client import EtcdClient, put_op
from pfs_volume.meta.etcd_keys import EtcdKeys, commit_json
from pfs_volume.meta.records import CommitRecord
from tests.etcd_cluster import EtcdCluster, free_port
from tests.pfs_node import PfsNode, unique_driver_name

NODES = (("node0", "127.0.0.2"), ("node1", "127.0.0.3"))
REPOS = 10
BATCH = 100
"""Commit records per etcd transaction while filling."""
SETTLE = 15.0
"""Seconds the nodes get after the records are written before the window starts."""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process, in seconds (``proc(5)``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def fill(client: EtcdClient, repos: list[str], count: int) -> float:
    """Write ``count`` commit records spread over ``repos``; seconds it took."""
    keys = EtcdKeys("/pfs", "bench")
    started = time.monotonic()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    per_repo = count // len(repos)
    for repo in repos:
        parent: str | None = None
        ops = []
        for index in range(per_repo):
            commit_id = secrets.token_hex(16)
            record = CommitRecord(
                id=commit_id,
                repo=repo,
                branch="master",
                parent=parent,
                created=base + timedelta(seconds=index),
                message=f"bench {index}",
                origin="bench",
                holders=tuple(node_id for node_id, _ in NODES),
            )
            ops.append(put_op(keys.commit(repo, commit_id), commit_json(record)))
            parent = commit_id
            if len(ops) == BATCH:
                client.txn([], ops)
                ops = []
        if ops:
            client.txn([], ops)
    return time.monotonic() - started


def measure(root: Path, count: int, window: float, sweep: float | None) -> dict[str, Any]:
    """One cluster with ``count`` commit records: its idle CPU% per process."""
    etcd = EtcdCluster(root / f"etcd-{count}", members=1)
    nodes: list[PfsNode] = []
    try:
        etcd.start()
        token = secrets.token_hex(16)
        for node_id, host in NODES:
            args = [
                "--etcd", ",".join(etcd.endpoints),
                "--node-id", node_id,
                "--advertise", f"http://{host}:{free_port(host)}",
                "--cluster-token", token,
                "--replicas", "2",
            ]  # fmt: skip
            if sweep is not None:
                args += ["--repair-sweep", f"{sweep:g}"]
            node = PfsNode(root / f"{node_id}-{count}", unique_driver_name("pfsidle"), "1G")
            node.args += args
            nodes.append(node.start())
        repos = [f"idle{index}" for index in range(REPOS)]
        for repo in repos:
            nodes[0].cli("repo", "create", repo, "--replicas", "2")
        client = EtcdClient(etcd.endpoints)
        try:
            filled = fill(client, repos, count)
        finally:
            client.close()
        print(f"{count:,} commit records written in {filled:.1f} s; settling {SETTLE:g} s")
        time.sleep(SETTLE)
        processes = {n.args[n.args.index("--node-id") + 1]: n.process for n in nodes}
        pids = {name: p.pid for name, p in processes.items() if p is not None}
        etcd_process = etcd.processes[0]
        assert etcd_process is not None
        pids["etcd"] = etcd_process.pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        time.sleep(window)
        wall = time.monotonic() - start
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load_after = os.getloadavg()[0]
        cpu = {name: round(100 * (after[name] - before[name]) / wall, 2) for name in pids}
        return {
            "count": count,
            "window_s": round(wall, 1),
            "cpu_percent": cpu,
            "load_1min": [round(load_before, 2), round(load_after, 2)],
            "fill_s": round(filled, 1),
        }
    finally:
        for node in nodes:
            node.cleanup()
        etcd.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10000,100000")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--sweep-interval", type=float, default=None)
    options = parser.parse_args()
    require_root()
    root = Path(tempfile.mkdtemp(prefix="pfsbench-idle-"))
    notes = machine_notes(root)
    print_notes(notes)
    runs = []
    try:
        for count in (int(c) for c in options.counts.split(",")):
            runs.append(measure(root, count, options.window, options.sweep_interval))
            print(json.dumps(runs[-1]))
    finally:
        pools = [p for p in root.glob("node*/pool") if is_mountpoint(p)]
        if not pools:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"a pool is still mounted: left {root} in place")
    names = list(runs[0]["cpu_percent"]) if runs else []
    rows = [
        [f"{run['count']:,}", *(f"{run['cpu_percent'][n]:.2f}" for n in names),
         " -> ".join(f"{x:.2f}" for x in run["load_1min"])]
        for run in runs
    ]  # fmt: skip
    print(table(["commits", *(f"{n} CPU%" for n in names), "load 1 min"], rows))
    notes["load average at end"] = load_average()
    path = write_results("cluster_idle", {"machine": notes, "runs": runs})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
