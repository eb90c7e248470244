"""Placement balance and repair moves on simulated clusters of 5 and 50 nodes.

A real single-member etcd (``tests/etcd_cluster.py``) and, per cluster size, the
simulated nodes of ``tests/placement_sim.py``: real ``NodeRegistry`` leases, repos placed
by ``ClusterCoordinator.place`` (from 4 nodes at once, each with its own view of the
loads) and stored by ``EtcdStore`` with one commit each, and the
repair pass's own decision (``placement.repair_plan`` + ``set_placement``) on every live
node; a copy is recorded, not made. A tenth of the nodes die (leases revoked): 1 of 5,
5 of 50.

    balance   replicas per node: max/mean and min/mean, after creation and after repair
    moves     commit copies repair made, against the minimum (one per replica on a
              dead node); placements written; compare-and-swaps lost to another node
    time      the repair passes of every live node (4 at once), and one pure plan
              (median of 7)

Placement is rendezvous bounded by load (``placement.fill``); the 50-node cluster also
runs with plain rendezvous (what placement was before), for comparison in one run.
Targets: moves equal to the minimum and no repo without a dead holder moved (at both
sizes); balance within 10 % of the mean, after creation and after repair.
Run from the repo root (no root needed):

    PYTHONPATH=. .venv/bin/python bench/placement_sim.py [--repos N] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import (
    fmt_seconds,
    load_average,
    median,
    table,
    timed,
    verdict,
    write_results,
)
from pfs_volume.cluster import placement
from tests.etcd_cluster import EtcdCluster
from tests.placement_sim import SimCluster, balance

SIZES = (5, 50)
REPLICAS = 2
BALANCE_TARGET = 0.10
PLAN_RUNS = 7
CREATORS = 4


def run_size(endpoints: list[str], nodes: int, repos: int, load_aware: bool) -> dict[str, Any]:
    """Create, kill a tenth, repair: the numbers for one cluster size."""
    sim = SimCluster(
        endpoints, nodes, ttl=5, replicas=REPLICAS, creators=CREATORS, load_aware=load_aware
    ).start()
    try:
        start = time.perf_counter()
        sim.create_repos(repos)
        created_in = time.perf_counter() - start
        before = sim.placements()
        spread = balance(before.values(), sim.ids)
        dead = sim.ids[1::10][: max(nodes // 10, 1)]
        sim.kill(dead, revoke=True)
        live = sim.wait_live(nodes - len(dead))
        records = sim.stores[live[0]].list_repos()
        plan_seconds = median(
            [timed(lambda: placement.repair_plan(records, live)) for _ in range(PLAN_RUNS)]
        )
        report = sim.repair(live)
        after = sim.placements()
        holders = sim.holders()
        after_spread = balance(after.values(), live)
        lost = {repo: set(held) & set(dead) for repo, held in before.items()}
        minimum = sum(len(gone) for gone in lost.values())
        copied = Counter(repo for repo, _node in report.copies)
        needless = [repo for repo, gone in lost.items() if not gone and after[repo] != before[repo]]
        whole = all(
            len(nodes_now) == REPLICAS
            and set(nodes_now) <= set(live)
            and set(holders[repo]) & set(live) == set(nodes_now)
            for repo, nodes_now in after.items()
        )
        exact = copied == Counter({repo: len(gone) for repo, gone in lost.items() if gone})
        return {
            "nodes": nodes,
            "load_aware": load_aware,
            "repos": repos,
            "replicas": REPLICAS,
            "dead": dead,
            "create_seconds": created_in,
            "balance_before": {
                "mean": spread.mean,
                "max_over_mean": spread.max_over_mean,
                "min_over_mean": spread.min_over_mean,
            },
            "balance_after": {
                "mean": after_spread.mean,
                "max_over_mean": after_spread.max_over_mean,
                "min_over_mean": after_spread.min_over_mean,
            },
            "moves": len(report.copies),
            "minimum_moves": minimum,
            "repos_moved": len(copied),
            "repos_that_lost_a_holder": sum(1 for gone in lost.values() if gone),
            "needless_moves": len(needless),
            "every_repo_whole": whole,
            "moves_exact_per_repo": exact,
            "placements_written": report.written,
            "cas_lost": report.lost_races,
            "repair_seconds": report.seconds,
            "passes": len(live),
            "plan_seconds": plan_seconds,
        }
    finally:
        sim.stop()


def pure_balance(nodes: int, repos: int, load_aware: bool) -> dict[str, Any]:
    """Balance of ``choose`` alone (no etcd; placed one after another, the loads counted
    exactly), for repo counts too large to store here."""
    names = [f"node{i:02d}" for i in range(nodes)]
    loads = placement.load_of([], names)
    placed = []
    for i in range(repos):
        chosen = placement.choose(f"repo{i:05d}", names, REPLICAS, loads if load_aware else None)
        loads.update(chosen)
        placed.append(chosen)
    spread = balance(placed, names)
    return {
        "nodes": nodes,
        "load_aware": load_aware,
        "repos": repos,
        "mean": spread.mean,
        "max_over_mean": spread.max_over_mean,
        "min_over_mean": spread.min_over_mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=2000, help="repos per cluster size")
    parser.add_argument("--quick", action="store_true", help="500 repos, no pure sweep")
    args = parser.parse_args()
    repos = 500 if args.quick else args.repos
    load_start = load_average()
    root = Path(tempfile.mkdtemp(prefix="pfs-placement-sim-"))
    etcd = EtcdCluster(root / "etcd", members=1)
    try:
        etcd.start()
        runs = [run_size(etcd.endpoints, SIZES[0], repos, True)]
        runs += [run_size(etcd.endpoints, SIZES[1], repos, aware) for aware in (False, True)]
    finally:
        etcd.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    sweep = (
        []
        if args.quick
        else [
            pure_balance(50, count, aware)
            for count in (2_000, 20_000, 50_000)
            for aware in (False, True)
        ]
    )

    rows = []
    for run in runs:
        b, a = run["balance_before"], run["balance_after"]
        rows.append(
            [
                f"{run['nodes']} nodes, {len(run['dead'])} dead"
                + ("" if run["load_aware"] else " (plain)"),
                f"{b['mean']:.0f}",
                f"{b['max_over_mean']:.3f} / {b['min_over_mean']:.3f}",
                f"{a['max_over_mean']:.3f} / {a['min_over_mean']:.3f}",
                f"{run['moves']} / {run['minimum_moves']}",
                str(run["needless_moves"]),
                f"{run['placements_written']} ({run['cas_lost']} lost)",
                fmt_seconds(run["repair_seconds"]),
                fmt_seconds(run["plan_seconds"]),
            ]
        )
    print(f"\n{repos} repos x {REPLICAS} replicas; a tenth of the nodes die\n")
    header = [
        "cluster",
        "mean/node",
        "max/min of mean",
        "after repair",
        "moves / min",
        "needless",
        "placements (CAS)",
        "repair (all)",
        "plan (1 pass)",
    ]
    print(table(header, rows))
    small, large = runs[0], runs[-1]
    growth = {
        "repair_seconds": large["repair_seconds"] / small["repair_seconds"],
        "plan_seconds": large["plan_seconds"] / small["plan_seconds"],
        "repair_seconds_per_pass": (large["repair_seconds"] / large["passes"])
        / (small["repair_seconds"] / small["passes"]),
    }
    print(
        f"\n10x the nodes: repair of every live node {growth['repair_seconds']:.1f}x the time "
        f"({growth['repair_seconds_per_pass']:.1f}x per node's pass), one plan "
        f"{growth['plan_seconds']:.1f}x"
    )
    if sweep:
        print("\nbalance of choose alone, 50 nodes:")
        print(
            table(
                ["repos", "placement", "mean/node", "max/mean", "min/mean"],
                [
                    [
                        f"{s['repos']:,}",
                        "bounded by load" if s["load_aware"] else "plain rendezvous",
                        f"{s['mean']:.0f}",
                        f"{s['max_over_mean']:.3f}",
                        f"{s['min_over_mean']:.3f}",
                    ]
                    for s in sweep
                ],
            )
        )
    verdicts = {
        "moves equal the minimum, per repo": all(r["moves_exact_per_repo"] for r in runs),
        "no repo without a dead holder moved": all(r["needless_moves"] == 0 for r in runs),
        "every repo whole and live after repair": all(r["every_repo_whole"] for r in runs),
        **{
            f"balance within 10 % at {r['nodes']} nodes, created and repaired": all(
                r[when]["max_over_mean"] <= 1 + BALANCE_TARGET
                and r[when]["min_over_mean"] >= 1 - BALANCE_TARGET
                for when in ("balance_before", "balance_after")
            )
            for r in runs
            if r["load_aware"]
        },
    }
    print()
    for name, ok in verdicts.items():
        print(f"  {verdict(ok):6}  {name}")
    path = write_results(
        "placement_sim",
        {
            "runs": runs,
            "growth_5_to_50_nodes": growth,
            "pure_balance": sweep,
            "verdicts": verdicts,
            "load_average_start": load_start,
            "load_average_end": load_average(),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
