"""Replication between two cluster nodes against a bare ``btrfs send | btrfs receive``.

A real single-member etcd (``tests/etcd_cluster.py``) and two real ``pfs serve`` nodes:
A on 127.0.0.2 and B on 127.0.0.3, each with its own loop-mounted pool image. Every
repo is created on A with ``--replicas 1`` under a name that rendezvous placement puts
on A alone, so B holds a commit only once it asks for it: here, by a Docker ``Mount`` of
``repo@COMMIT`` on B's plugin socket, which pulls the commit's send stream from A's node
API before it answers.

    full          B mounts a 1 GiB commit (1,024 files of 1 MiB) it has nothing of,
                  against  btrfs send A/SNAP | btrfs receive B/DIR
    incremental   B mounts a commit that rewrote one 1 MiB file of one B holds,
                  against  btrfs send -p A/PARENT A/SNAP | btrfs receive B/DIR
    mount         Mount of a 1 MiB commit of a new repo on A (local) and on B (fetched)

Targets: full replication at least 0.8 of the bare pipe's throughput with the data at
rest on B; an incremental fetch well under a second. Run as root from the repo root:

    PYTHONPATH=/work/main .venv/bin/python bench/replication_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import (
    PluginClient,
    fmt_ratio,
    fmt_seconds,
    load_average,
    machine_notes,
    median,
    print_notes,
    require_root,
    table,
    verdict,
    write_results,
)
from pfs_volume.btrfs.pool_image import is_mountpoint
from pfs_volume.cluster import placement
from tests.etcd_cluster import EtcdCluster
from tests.pfs_node import PfsNode, unique_driver_name

MiB = 1024**2
NODES = (("node0", "127.0.0.2"), ("node1", "127.0.0.3"))
POOL_SIZE = "16G"
"""Sparse: B ends up with every full commit twice (pfs's copy and the bare one)."""
LEASE_TTL = 10
FULL_REPS, INCR_REPS, MOUNT_REPS = 3, 5, 10
FULL_FILES, QUICK_FILES = 1024, 128
SMALL_COMMIT = MiB
BTRFS_TIMEOUT = 600.0
"""Seconds one bare send or receive may take: far more than 1 GiB needs."""
FULL_TARGET = 0.8
INCREMENTAL_TARGET = 1.0
LOG_LINES_SHOWN = 10


def free_port(host: str) -> int:
    """A TCP port nothing listens on at ``host`` now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def placed_on_a(stem: str) -> str:
    """A repo name whose single replica rendezvous puts on node A."""
    ids = [node_id for node_id, _ in NODES]
    for index in range(1000):
        name = f"{stem}{index}"
        if placement.choose(name, ids, 1) == (ids[0],):
            return name
    raise RuntimeError(f"no repo name {stem}N is placed on {ids[0]} alone")


def sync_all() -> None:
    subprocess.run(["sync"], check=True)


class Node:
    """One ``pfs serve`` of the cluster, driven through its plugin socket as Docker does."""

    def __init__(self, root: Path, node_id: str, host: str, etcd: list[str], token: str):
        self.node_id = node_id
        self.daemon = PfsNode(
            root / node_id,
            unique_driver_name("pfsrepl"),
            pool_size=POOL_SIZE,
            args=[
                "--etcd", ",".join(etcd),
                "--node-id", node_id,
                "--advertise", f"http://{host}:{free_port(host)}",
                "--cluster-token", token,
                "--lease-ttl", str(LEASE_TTL),
                "--replicas", "1",
            ],
        )  # fmt: skip
        self.client = PluginClient(self.daemon.plugin_socket)

    @property
    def pool(self) -> Path:
        return self.daemon.pool_root

    def snapshot(self, repo: str, commit: str) -> Path:
        return self.pool / "repos" / repo / "commits" / commit

    def call(self, method: str, name: str, mount_id: str) -> dict[str, Any]:
        reply = self.client.call(method, {"Name": name, "ID": mount_id})
        if reply.get("Err"):
            raise RuntimeError(f"{method} {name} on {self.node_id}: {reply['Err']}")
        return reply

    def timed_mount(self, repo: str, commit: str) -> tuple[float, float]:
        """Mount ``repo@commit`` (the timed call), ``btrfs filesystem sync`` the pool,
        Unmount; seconds until the Mount returned and until the data was at rest."""
        name = f"{self.daemon.driver_name}/{repo}@{commit}"
        mount_id = secrets.token_hex(8)
        sync_all()
        start = time.perf_counter()
        reply = self.call("VolumeDriver.Mount", name, mount_id)
        mounted = time.perf_counter() - start
        subprocess.run(["btrfs", "filesystem", "sync", str(self.pool)], check=True)
        at_rest = time.perf_counter() - start
        self.call("VolumeDriver.Unmount", name, mount_id)
        if not Path(reply["Mountpoint"]).is_dir() or not self.snapshot(repo, commit).is_dir():
            raise RuntimeError(f"Mount of {name} on {self.node_id} gave no snapshot: {reply}")
        return mounted, at_rest

    def create_repo(self, name: str) -> None:
        self.daemon.cli("repo", "create", name, "--replicas", "1")

    def write_commit(self, repo: str, write: Callable[[Path], None]) -> str:
        """Mount the repo's master, let ``write`` fill it, Unmount (which commits), and
        ``sync``; the new head."""
        name = f"{self.daemon.driver_name}/{repo}/master"
        mount_id = secrets.token_hex(8)
        write(Path(self.call("VolumeDriver.Mount", name, mount_id)["Mountpoint"]))
        self.call("VolumeDriver.Unmount", name, mount_id)
        sync_all()
        head: str = self.daemon.cli_json("commit", "inspect", f"{repo}@master")["id"]
        return head

    def holders(self, repo: str, commit: str) -> list[str]:
        found: list[str] = self.daemon.cli_json("commit", "inspect", f"{repo}@{commit}")["holders"]
        return found


def write_random(files: dict[str, int]) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        for rel, size in files.items():
            (root / rel).write_bytes(os.urandom(size))

    return write


def stream_bytes(snapshot: Path, parent: Path | None = None) -> int:
    """The length of the snapshot's send stream (read and counted, untimed)."""
    args = ["btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(snapshot)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    total = 0
    while chunk := process.stdout.read(MiB):
        total += len(chunk)
    if process.wait(timeout=BTRFS_TIMEOUT) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {process.stderr.read().decode()}")
    process.stdout.close()
    process.stderr.close()
    return total


def bare_pipe(snapshot: Path, parent: Path | None, into: Path, pool: Path) -> tuple[float, float]:
    """``btrfs send [-p PARENT] SNAPSHOT | btrfs receive INTO`` (two processes and a pipe,
    as a shell makes it), then ``btrfs filesystem sync``; seconds until receive exited
    and until the data was at rest."""
    into.mkdir(parents=True)
    send_args = ["btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(snapshot)]
    receive_args = ["btrfs", "receive", "-q", str(into)]
    sync_all()
    start = time.perf_counter()
    sender = subprocess.Popen(send_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    receiver = subprocess.Popen(
        receive_args, stdin=sender.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert sender.stdout is not None
    sender.stdout.close()  # receive holds the read end; send sees EPIPE if it dies
    _, receive_err = receiver.communicate(timeout=BTRFS_TIMEOUT)
    _, send_err = sender.communicate(timeout=BTRFS_TIMEOUT)
    received = time.perf_counter() - start
    subprocess.run(["btrfs", "filesystem", "sync", str(pool)], check=True)
    at_rest = time.perf_counter() - start
    for args, process, err in (
        (send_args, sender, send_err),
        (receive_args, receiver, receive_err),
    ):
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {err.decode(errors='replace')}")
    return received, at_rest


def alternate(
    rep: int,
    samples: dict[str, list[list[float]]],
    runs: dict[str, Callable[[], tuple[float, float]]],
) -> None:
    """Run each of ``runs`` once, into ``samples``; the first goes first on even reps, as
    caches and a fuller pool favour whichever goes second."""
    kinds = list(runs) if rep % 2 == 0 else list(reversed(runs))
    for kind in kinds:
        samples[kind].append(list(runs[kind]()))


def full_replication(a: Node, b: Node, files: int) -> dict[str, Any]:
    """B fetches a commit of ``files`` MiB it holds nothing of, vs the bare pipe."""
    print(f"  full: {FULL_REPS} repos of {files} MiB on A ...", flush=True)
    repos = []
    for rep in range(FULL_REPS):
        repo = placed_on_a(f"full{rep}-")
        a.create_repo(repo)
        content = {f"f{n:05}": MiB for n in range(files)}
        repos.append((repo, a.write_commit(repo, write_random(content))))
    sizes = [stream_bytes(a.snapshot(repo, commit)) for repo, commit in repos]
    samples: dict[str, list[list[float]]] = {"pfs": [], "bare": []}
    for rep, (repo, commit) in enumerate(repos):
        if b.snapshot(repo, commit).exists() or b.node_id in a.holders(repo, commit):
            raise RuntimeError(f"B holds {repo}@{commit} before it asked for it")
        print(f"  full: rep {rep + 1}/{FULL_REPS} ...", flush=True)
        alternate(
            rep,
            samples,
            {
                "pfs": partial(b.timed_mount, repo, commit),
                "bare": partial(
                    bare_pipe, a.snapshot(repo, commit), None, b.pool / "bare" / repo, b.pool
                ),
            },
        )
    return {"repos": repos, "stream_bytes": sizes, "samples": samples}


def incremental_replication(a: Node, b: Node, repo: str, parent: str) -> dict[str, Any]:
    """Successive one-file commits on A, each fetched by B that holds its parent."""
    samples: dict[str, list[list[float]]] = {"pfs": [], "bare": []}
    sizes = []
    commits = []
    for rep in range(INCR_REPS):
        print(f"  incremental: rep {rep + 1}/{INCR_REPS} ...", flush=True)
        commit = a.write_commit(repo, write_random({f"f{rep * 37 % 100:05}": MiB}))
        old, new = a.snapshot(repo, parent), a.snapshot(repo, commit)
        sizes.append(stream_bytes(new, old))
        into = b.pool / "bare-incremental" / f"{rep}"
        alternate(
            rep,
            samples,
            {
                "pfs": partial(b.timed_mount, repo, commit),
                "bare": partial(bare_pipe, new, old, into, b.pool),
            },
        )
        commits.append(commit)
        parent = commit
    fetched = b.daemon.log().count("fetched from node=node0 (incremental on")
    return {"commits": commits, "stream_bytes": sizes, "samples": samples, "logged": fetched}


def mount_latency(a: Node, b: Node) -> dict[str, Any]:
    """A 1 MiB commit of a new repo each round: Mount on A (local), on B (fetched, a full
    stream), and on B again (held now)."""
    samples: dict[str, list[float]] = {"A, local": [], "B, fetched": [], "B, held now": []}
    for rep in range(MOUNT_REPS):
        repo = placed_on_a(f"small{rep}-")
        a.create_repo(repo)
        commit = a.write_commit(repo, write_random({"data.bin": SMALL_COMMIT}))

        local = partial(a.timed_mount, repo, commit)
        fetch = partial(b.timed_mount, repo, commit)
        if rep % 2 == 0:
            samples["A, local"].append(local()[0])
        samples["B, fetched"].append(fetch()[0])
        samples["B, held now"].append(fetch()[0])
        if rep % 2 == 1:
            samples["A, local"].append(local()[0])
    return {"samples": samples}


def spread(samples: list[float]) -> str:
    """The lowest and highest sample: runs vary widely on a loop-mounted pool."""
    return f"{fmt_seconds(min(samples))} - {fmt_seconds(max(samples))}"


def compare(
    title: str, samples: dict[str, list[list[float]]], bare: str, size: float | None
) -> dict[str, tuple[float, float]]:
    """Print pfs against the bare pipe: time until each returned and until the data was
    at rest (and throughput, given the stream ``size``); the medians by kind."""
    print(title)
    labels = {"pfs": "pfs: Mount repo@C on B", "bare": bare}
    header = ["", "returned", "at rest", "at rest, range"]
    if size is not None:
        header += ["throughput", "at rest"]
    rows = []
    medians = {}
    for kind, label in labels.items():
        returned = median([s[0] for s in samples[kind]])
        at_rest = median([s[1] for s in samples[kind]])
        medians[kind] = (returned, at_rest)
        row = [label, fmt_seconds(returned), fmt_seconds(at_rest)]
        row.append(spread([s[1] for s in samples[kind]]))
        if size is not None:
            row += [f"{size / returned / MiB:,.0f} MiB/s", f"{size / at_rest / MiB:,.0f} MiB/s"]
        rows.append(row)
    print(table(header, rows))
    return medians


def report(
    full: dict[str, Any], incr: dict[str, Any], mounts: dict[str, Any], files: int
) -> dict[str, Any]:
    """Print the tables and verdicts; the summary for the results file."""
    size = median(full["stream_bytes"])
    medians = compare(
        f"\nfull replication: a {files} MiB commit ({files:,} files of 1 MiB), send stream "
        f"{size / MiB:,.1f} MiB; median of {FULL_REPS}",
        full["samples"],
        "btrfs send | receive",
        size,
    )
    ratio_rest = medians["bare"][1] / medians["pfs"][1]
    ratio_returned = medians["bare"][0] / medians["pfs"][0]
    print(
        f"pfs / bare throughput: {ratio_returned:.2f} until it returned, {ratio_rest:.2f} at rest"
    )

    size = median(incr["stream_bytes"])
    incremental = compare(
        f"\nincremental replication: one 1 MiB file rewritten in that repo, send stream "
        f"{size / MiB:,.2f} MiB (-p PARENT); median of {INCR_REPS} successive commits",
        incr["samples"],
        "btrfs send -p | receive",
        None,
    )
    print(
        f"B's log shows {incr['logged']} of {INCR_REPS} fetches as incremental; "
        f"pfs / bare time: {fmt_ratio(incremental['pfs'][0] / incremental['bare'][0])}"
    )

    print(f"\nMount of repo@C, a 1 MiB commit of a new repo; median of {MOUNT_REPS}")
    rows = [[label, fmt_seconds(median(s)), spread(s)] for label, s in mounts["samples"].items()]
    print(table(["", "Mount", "range"], rows))
    local = median(mounts["samples"]["A, local"])
    remote = median(mounts["samples"]["B, fetched"])
    print(f"fetched / local: {fmt_ratio(remote / local)}")

    summary = {
        "full_ratio_at_rest": ratio_rest,
        "full_ratio_returned": ratio_returned,
        "full_met": ratio_rest >= FULL_TARGET,
        "incremental_s": incremental["pfs"][0],
        "incremental_met": (
            incremental["pfs"][0] < INCREMENTAL_TARGET and incr["logged"] == INCR_REPS
        ),
        "mount_local_s": local,
        "mount_fetched_s": remote,
        "mount_ratio": remote / local,
    }
    print()
    print(
        f"full: pfs / bare throughput (data at rest): {ratio_rest:.2f} "
        f"(target >= {FULL_TARGET})  {verdict(summary['full_met'])}"
    )
    print(
        f"incremental: pfs Mount {fmt_seconds(summary['incremental_s'])} "
        f"(target < {INCREMENTAL_TARGET:.0f} s, fetched incrementally)  "
        f"{verdict(summary['incremental_met'])}"
    )
    return summary


def complaints(nodes: list[Node]) -> list[str]:
    """The WARNING and ERROR lines the daemons logged: a clean run has none."""
    found = []
    for node in nodes:
        for line in node.daemon.log().splitlines():
            if " WARNING " in line or " ERROR " in line or "Traceback" in line:
                found.append(f"{node.node_id}: {line}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB instead of 1 GiB")
    files = QUICK_FILES if parser.parse_args().quick else FULL_FILES
    require_root()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="pfsbench-repl-"))
    etcd = EtcdCluster(root / "etcd", members=1)
    nodes: list[Node] = []
    try:
        etcd.start()
        token = secrets.token_hex(16)
        for node_id, host in NODES:
            nodes.append(Node(root, node_id, host, etcd.endpoints, token))
            nodes[-1].daemon.start()
        a, b = nodes
        notes = machine_notes(root)
        print("replication: node A -> node B (two pfs serve, one etcd, loop-mounted pools)")
        print_notes(notes)
        print("Each timed run starts after `sync`; A's page cache holds the data it just wrote.")
        full = full_replication(a, b, files)
        last_repo, last_commit = full["repos"][-1]
        incr = incremental_replication(a, b, last_repo, last_commit)
        mounts = mount_latency(a, b)
        summary = report(full, incr, mounts, files)
        logged = complaints(nodes)
        print(f"daemon warnings and errors: {len(logged)}")
        for line in logged[:LOG_LINES_SHOWN]:
            print(f"  {line}")
        elapsed = time.monotonic() - started
        notes["load average at end"] = load_average()
        print(
            f"\ntotal run time {elapsed:.0f} s; load average at end: {notes['load average at end']}"
        )
        path = write_results(
            "replication",
            {
                "machine": notes,
                "files": files,
                "full": full,
                "incremental": incr,
                "mount": mounts,
                "targets": summary,
                "daemon_complaints": logged,
                "elapsed_s": elapsed,
            },
        )
        print(f"results: {path}")
    finally:
        for node in nodes:
            node.client.close()
            node.daemon.cleanup()
        etcd.cleanup()
        if not any(is_mountpoint(node.pool) for node in nodes):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"a pool is still mounted: left {root} in place")


if __name__ == "__main__":
    main()
