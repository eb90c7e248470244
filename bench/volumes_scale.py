"""Docker's List and Get at 1,000 and 10,000 volumes, over the real plugin socket.

One private ``pfs serve`` (``tests/pfs_node.py``, a unique driver name) is given repos with
commits and branches, then volume names through the plugin socket's ``Create``, as Docker
sends it: a mix of branch volumes (``R/bK``, ``DRIVER/R/bK``, ``R/bK@HEAD``, ...:
working copies) and commit volumes (``R@ID``, ``DRIVER/R@ID`` and unique prefixes of ID: read-only
snapshots). At each size it times ``VolumeDriver.List`` (every volume: repeated, as Docker
calls it, and right after a write, which makes a daemon that keeps List's answer work it
out again) and ``VolumeDriver.Get`` (a fixed sample of names of both kinds, the same names
at both sizes).

``--baseline-tree DIR`` (a checkout of the code to compare with, e.g. ``git archive main``)
restarts the same daemon on the same pool with ``PYTHONPATH=DIR`` and times it too, so
before and after are measured on the same data in the same run.

Targets: List <= 100 ms at 10,000 volumes; Get flat: its median at 10,000 volumes within
1.5x of its median at 1,000.

``--cluster`` runs the daemon as node0 of a 2-node cluster (a private single-member etcd,
``tests/etcd_cluster.py``, and an idle node1 on 127.0.0.3 whose only writes are its
membership heartbeats, as are node0's own), and spaces the repeated List calls
``CLUSTER_LIST_GAP`` seconds apart, as Docker's are, so that heartbeats fall between them.

Run as root from the repo root:
    PYTHONPATH=$PWD .venv/bin/python bench/volumes_scale.py [--baseline-tree /tmp/before]
        [--cluster] [--sizes 1000,10000]
Setup takes a few minutes (10,000 Create calls and about 1,000 working copies).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import tempfile
import time
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
    timed,
    verdict,
    write_results,
)
from tests.etcd_cluster import EtcdCluster, free_port
from tests.pfs_node import PfsNode, unique_driver_name

SIZES = (1_000, 10_000)
REPOS = 10
COMMITS_PER_REPO = 20
BRANCHES_PER_REPO = 100
LIST_RUNS = 9
CHANGED_RUNS = 3
GET_SAMPLE = 200
LIST_TARGET = 0.100
GET_GROWTH_TARGET = 1.5
POOL_SIZE = "4G"
CLUSTER_LIST_GAP = 2.5
"""Seconds between List calls with ``--cluster``: more than a lease renewal (TTL/3)."""
CLUSTER_NODES = (("node0", "127.0.0.2"), ("node1", "127.0.0.3"))
WRITES = {"changed": "mount+unmount", "commit": "commit", "create": "Create"}
"""The writes List is timed right after, by results key: what each column shows."""


def make_repos(node: PfsNode) -> dict[str, list[str]]:
    """Repos with commits on master; each repo's commit ids."""
    commits: dict[str, list[str]] = {}
    for r in range(REPOS):
        repo = f"scale{r}"
        reply = node.plugin("VolumeDriver.Create", {"Name": repo})
        assert not reply.get("Err"), reply
        path = Path(node.plugin("VolumeDriver.Path", {"Name": repo})["Mountpoint"])
        commits[repo] = []
        for c in range(COMMITS_PER_REPO):
            (path / "data").write_text(f"{repo} {c}\n")
            made = node.api("POST", f"/v1/repos/{repo}/branches/master/commit").json()
            commits[repo].append(made["commit"]["id"])
    return commits


def volume_names(driver: str, commits: dict[str, list[str]]) -> list[str]:
    """10,000+ distinct names, branch and commit volumes interleaved so that the first
    1,000 are a mix too."""
    branch_names: list[str] = []
    commit_names: list[str] = []
    for repo, ids in commits.items():
        for k in range(BRANCHES_PER_REPO):
            b, head = f"b{k}", ids[-1]
            branch_names += [f"{repo}/{b}", f"{driver}/{repo}/{b}", f"{repo}/{b}@{head}"]
            branch_names.append(f"{driver}/{repo}/{b}@{head[:12]}")
        for cid in ids:
            for length in range(8, 33):
                commit_names += [f"{repo}@{cid[:length]}", f"{driver}/{repo}@{cid[:length]}"]
    random.Random(14).shuffle(branch_names)
    random.Random(15).shuffle(commit_names)
    names: list[str] = []
    while branch_names or commit_names:
        if branch_names:
            names.append(branch_names.pop())
        names += [commit_names.pop() for _ in range(min(3, len(commit_names)))]
    return names


def create(client: PluginClient, names: list[str]) -> None:
    for name in names:
        reply = client.call("VolumeDriver.Create", {"Name": name})
        if reply.get("Err"):
            raise RuntimeError(f"Create {name}: {reply['Err']}")


def measure(
    client: PluginClient,
    node: PfsNode,
    sample: list[str],
    count: int,
    changer: str,
    label: str,
    gap: float = 0.0,
) -> dict[str, Any]:
    """List runs; List runs each right after a write: a Mount and Unmount of the
    read-only volume ``changer`` (a mount record written and deleted), a commit on one
    repo's master by a Mount, a write and the Unmount (its head moves, a snapshot is
    made: every volume of that repo, a tenth of all, may have changed), a Create of a
    new branch volume (a volume name, a branch and a working copy; removed again,
    untimed); and Get of every sampled name (twice: the first round warms up)."""
    raw: list[bytes] = [b""]

    def list_all() -> None:
        # Timed to the answer's last byte: decoding 10,000 volumes is Docker's cost.
        raw[0] = client.call_raw("VolumeDriver.List", {})

    list_all()
    list_samples = []
    for _ in range(LIST_RUNS):
        time.sleep(gap)
        list_samples.append(timed(list_all))
    changed_samples = []
    for run in range(CHANGED_RUNS):
        for call in ("Mount", "Unmount"):
            reply = client.call(f"VolumeDriver.{call}", {"Name": changer, "ID": f"b{run}"})
            if reply.get("Err"):
                raise RuntimeError(f"{call} {changer}: {reply['Err']}")
        changed_samples.append(timed(list_all))
    commit_samples = []
    for run in range(CHANGED_RUNS):
        repo, mount_id = f"scale{run}", f"commit-{label}-{count}-{run}"
        before = node.api("GET", f"/v1/repos/{repo}/branches").json()
        head = next(b["head"] for b in before["branches"] if b["name"] == "master")
        # As a container writes: Mount (the working copy is made if a reset dropped it),
        # a write, and the Unmount that commits it.
        mounted = client.call("VolumeDriver.Mount", {"Name": repo, "ID": mount_id})
        if mounted.get("Err"):
            raise RuntimeError(f"Mount {repo}: {mounted['Err']}")
        data = Path(mounted["Mountpoint"]) / "data"
        data.write_text(f"{label} {count} {run} {secrets.token_hex(8)}\n")
        client.call("VolumeDriver.Unmount", {"Name": repo, "ID": mount_id})
        after = node.api("GET", f"/v1/repos/{repo}/branches").json()
        if next(b["head"] for b in after["branches"] if b["name"] == "master") == head:
            raise RuntimeError(f"the Unmount of {repo} committed nothing")
        commit_samples.append(timed(list_all))
        # Back to where it was (untimed): names made later start at master's head.
        reset = node.api("POST", f"/v1/repos/{repo}/branches/master/reset", {"ref": head})
        if reset.status_code != 200:
            raise RuntimeError(f"reset of {repo}: {reset.text}")
    create_samples = []
    for run in range(CHANGED_RUNS):
        name = f"scale{run}/new-{label}-{run}"
        reply = client.call("VolumeDriver.Create", {"Name": name})
        if reply.get("Err"):
            raise RuntimeError(f"Create {name}: {reply['Err']}")
        create_samples.append(timed(list_all))
        client.call("VolumeDriver.Remove", {"Name": name})
    list_all()
    listed: list[dict[str, Any]] = json.loads(raw[0])["Volumes"]
    if len(listed) != count + REPOS:  # and the repos' own volumes, made first
        raise RuntimeError(f"List gave {len(listed)} volumes, expected {count + REPOS}")
    get_samples = []
    for round_ in range(2):
        for name in sample:
            seconds = timed(lambda n=name: client.call("VolumeDriver.Get", {"Name": n}))
            if round_:
                get_samples.append(seconds)
    with_mountpoint = sum(1 for v in listed if v["Mountpoint"])
    return {
        "volumes": count,
        "list_seconds": list_samples,
        "get_seconds": get_samples,
        "list_changed_seconds": changed_samples,
        "list_commit_seconds": commit_samples,
        "list_create_seconds": create_samples,
        "list_median": median(list_samples),
        "list_changed_median": median(changed_samples),
        "list_commit_median": median(commit_samples),
        "list_create_median": median(create_samples),
        "get_median": median(get_samples),
        "listed_with_mountpoint": with_mountpoint,
        "listing": sorted((v["Name"], v["Mountpoint"], v.get("CreatedAt")) for v in listed),
    }


def run_code(node: PfsNode, tree: Path | None) -> None:
    """(Re)start the daemon on its pool, with the code in ``tree`` (None: this tree)."""
    node.stop()
    env = {"PYTHONPATH": str(tree)} if tree is not None else {"PYTHONPATH": os.getcwd()}
    node.start(env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also time this checkout (e.g. of main) on the same pool and volumes",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="node0 of a 2-node cluster with its own etcd"
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="two volume counts")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(","))
    require_root()
    state = Path(tempfile.mkdtemp(prefix="pfsbench-volumes-"))
    node = PfsNode(state, unique_driver_name("pfsbench"), pool_size=POOL_SIZE)
    etcd: EtcdCluster | None = None
    idle: PfsNode | None = None
    gap = 0.0
    if args.cluster:
        etcd = EtcdCluster(state / "etcd", members=1).start()
        idle = PfsNode(state / "node1", unique_driver_name("pfsidle"), pool_size="1G")
        token = secrets.token_hex(16)
        for member, (node_id, host) in zip((node, idle), CLUSTER_NODES, strict=True):
            member.args += [
                "--etcd", ",".join(etcd.endpoints),
                "--node-id", node_id,
                "--advertise", f"http://{host}:{free_port(host)}",
                "--cluster-token", token,
                "--replicas", "1",
            ]  # fmt: skip
        idle.start()
        gap = CLUSTER_LIST_GAP
    codes: dict[str, Path | None] = {"after": None}
    if args.baseline_tree is not None:
        codes = {"before": args.baseline_tree.resolve(), **codes}
    results: dict[str, Any] = {"sizes": {}}
    try:
        node.start(env={"PYTHONPATH": os.getcwd()})
        notes = machine_notes(state)
        print("Docker's List and Get over the plugin socket, by number of volumes")
        print_notes(notes)
        started = time.monotonic()
        commits = make_repos(node)
        names = volume_names(node.driver_name, commits)
        sample = random.Random(16).sample(names[: sizes[0]], GET_SAMPLE)
        changer = next(n for n in names[: sizes[0]] if "@" in n and "/b" not in n)
        results["notes_at_start"] = {"load average": load_average()}
        done = 0
        for size in sizes:
            client = PluginClient(node.plugin_socket)
            create(client, names[done:size])
            client.close()
            done = size
            print(f"  {size:,} volumes made ({time.monotonic() - started:.0f} s)", flush=True)
            results["sizes"][size] = {}
            for label, tree in codes.items():
                run_code(node, tree)
                client = PluginClient(node.plugin_socket)
                results["sizes"][size][label] = measure(
                    client, node, sample, size, changer, label, gap
                )
                client.close()
        report(results, codes, sizes)
        for by_code in results["sizes"].values():
            listings = {label: m.pop("listing") for label, m in by_code.items()}
            if "before" in listings and listings["before"] != listings["after"]:
                raise RuntimeError("List answers differ between before and after")
        results["notes"] = {**notes, "load average at end": load_average()}
        print(f"\nresults: {write_results('volumes_scale', results)}")
    finally:
        node.cleanup()
        if idle is not None:
            idle.cleanup()
        if etcd is not None:
            etcd.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def report(results: dict[str, Any], codes: dict[str, Path | None], sizes: tuple[int, ...]) -> None:
    small, large = sizes
    rows = []
    written: list[list[str]] = []
    verdicts: dict[str, Any] = {}
    for label in codes:
        at = {n: results["sizes"][n][label] for n in sizes}
        list_growth = at[large]["list_median"] / at[small]["list_median"]
        changed_growth = at[large]["list_changed_median"] / at[small]["list_changed_median"]
        get_growth = at[large]["get_median"] / at[small]["get_median"]
        rows.append(
            [
                label,
                fmt_seconds(at[small]["list_median"]),
                fmt_seconds(at[large]["list_median"]),
                fmt_ratio(list_growth),
                fmt_seconds(at[small]["list_changed_median"]),
                fmt_seconds(at[large]["list_changed_median"]),
                fmt_ratio(changed_growth),
                fmt_seconds(at[small]["get_median"]),
                fmt_seconds(at[large]["get_median"]),
                fmt_ratio(get_growth),
            ]
        )
        written.append(
            [label] + [fmt_seconds(at[n][f"list_{case}_median"]) for case in WRITES for n in sizes]
        )
        verdicts[label] = {
            "list_growth": list_growth,
            "get_growth": get_growth,
            f"list <= {LIST_TARGET * 1000:.0f} ms at {large:,}": at[large]["list_median"]
            <= LIST_TARGET,
            **{
                f"list after a {case} <= {LIST_TARGET * 1000:.0f} ms at {large:,}": at[large][
                    f"list_{case}_median"
                ]
                <= LIST_TARGET
                for case in WRITES
            },
            f"get growth <= {GET_GROWTH_TARGET}x for 10x": get_growth <= GET_GROWTH_TARGET,
        }
    header = ["code", f"List {small:,}", f"List {large:,}", "growth"]
    header += [f"after write {small:,}", f"after write {large:,}", "growth"]
    header += [f"Get {small:,}", f"Get {large:,}", "growth"]
    print(
        f"\nmedians: List of every volume ({LIST_RUNS} runs; {CHANGED_RUNS} right after a "
        f"write), Get of {GET_SAMPLE} names"
    )
    print(table(header, rows))
    print(f"\nmedians: List right after a write ({CHANGED_RUNS} runs each)")
    columns = [f"{WRITES[case]} {n:,}" for case in WRITES for n in sizes]
    print(table(["code", *columns], written))
    after = verdicts["after"]
    for key, value in after.items():
        if isinstance(value, bool):
            print(f"  target {key}: {verdict(value)}")
    results["verdicts"] = verdicts


if __name__ == "__main__":
    main()
