"""Crash storm: N SIGKILLs of pfs during mixed traffic; what was acknowledged vs committed.

Traffic (``tests/crash_storm.py``): ``docker run`` containers that write one file each
through Docker's real Mount and Unmount, ``pfs put`` through the API, and Docker's
Get/List/Path calls on the plugin socket. A killer SIGKILLs the daemon N times at random
moments and starts it again. Afterwards nothing is done by hand: the mount records must
settle to none and every acknowledged write must be in its branch's head commit.

Baseline, measured in the same run: a clean restart (SIGTERM, then start) of the same
daemon on the same pool, idle. Targets: acknowledged == committed, 0 stuck records,
restart p99 < 2 s. Run as root:
PYTHONPATH=/work/main .venv/bin/python bench/crash_storm.py [--kills N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    fmt_ratio,
    fmt_seconds,
    load_average,
    machine_notes,
    print_notes,
    require_root,
    table,
    verdict,
    write_results,
)
from tests.crash_storm import CrashStorm
from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode, unique_driver_name

RESTART_P99_TARGET = 2.0
CLEAN_RESTARTS = 10


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def clean_restarts(node: PfsNode, count: int) -> list[float]:
    """Seconds from start to both sockets answering, after a SIGTERM stop, ``count`` times."""
    samples = []
    for _ in range(count):
        node.stop()
        started = time.monotonic()
        node.start()
        samples.append(time.monotonic() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs (50)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the pauses (1)")
    args = parser.parse_args()
    require_root()
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="pfsbench-storm-"))
    engine = DockerEngine(state / "docker")
    node: PfsNode | None = None
    try:
        engine.start()
        image = engine.busybox_image()
        node = PfsNode(
            state / "pfs",
            unique_driver_name("pfsstorm"),
            pool_size="2G",
            env={"PFS_DOCKER_HOST": engine.host},
            args=["--reconcile-interval", "1", "--reconcile-grace", "10"],
        )
        node.start()
        notes = machine_notes(state)
        print(f"crash storm: {args.kills} SIGKILLs during docker run, pfs put and plugin reads")
        print_notes(notes)
        baseline = clean_restarts(node, CLEAN_RESTARTS)
        storm = CrashStorm(node, engine, image, kills=args.kills, seed=args.seed)
        result = storm.run(settle_timeout=120.0)
        rows = []
        for repo in sorted(result.acknowledged.keys() | result.attempts.keys()):
            acked = result.acknowledged.get(repo, {})
            committed = result.committed.get(repo, {})
            kept = sum(1 for name, text in acked.items() if committed.get(name) == text)
            rows.append(
                [
                    {"storm": "docker run", "puts": "pfs put"}.get(repo, repo),
                    str(result.attempts.get(repo, 0)),
                    str(len(acked)),
                    str(kept),
                    str(len(committed)),
                ]
            )
        print("\nwrites")
        print(table(["traffic", "attempted", "acknowledged", "ack'd & committed", "in head"], rows))
        storm_p50, storm_p99 = (
            statistics.median(result.restarts),
            percentile(result.restarts, 0.99),
        )
        base_p50, base_p99 = statistics.median(baseline), percentile(baseline, 0.99)
        print("\nrestart until both sockets answer")
        print(
            table(
                ["restart", "n", "p50", "p99", "p99 / clean p99"],
                [
                    [
                        "clean (SIGTERM, idle)",
                        str(len(baseline)),
                        fmt_seconds(base_p50),
                        fmt_seconds(base_p99),
                        "1.00x",
                    ],
                    [
                        "after SIGKILL, under load",
                        str(len(result.restarts)),
                        fmt_seconds(storm_p50),
                        fmt_seconds(storm_p99),
                        fmt_ratio(storm_p99 / base_p99),
                    ],
                ],
            )
        )
        lost = sum(len(names) for names in result.lost.values())
        print(
            f"\nstuck mount records after settling: {len(result.stuck)} "
            f"(settled in {result.settle_seconds:.1f} s)"
        )
        print(f"plugin 500s: {len(result.plugin_errors)}")
        print(f"refusals: {result.refusals}")
        print(f"target: acknowledged == committed: {lost} lost  {verdict(lost == 0)}")
        print(f"target: 0 stuck records: {len(result.stuck)}  {verdict(not result.stuck)}")
        print(
            f"target: restart p99 < {RESTART_P99_TARGET} s: {storm_p99:.2f} s  "
            f"{verdict(storm_p99 < RESTART_P99_TARGET)}"
        )
        elapsed = time.monotonic() - started
        notes["load average at end"] = load_average()
        print(
            f"total run time {elapsed:.0f} s; load average at end: {notes['load average at end']}"
        )
        data: dict[str, Any] = {
            "machine": notes,
            "kills": result.kills,
            "attempts": result.attempts,
            "acknowledged": {k: len(v) for k, v in result.acknowledged.items()},
            "lost": result.lost,
            "stuck": result.stuck,
            "restarts_s": result.restarts,
            "clean_restarts_s": baseline,
            "settle_s": result.settle_seconds,
            "refusals": result.refusals,
            "plugin_errors": result.plugin_errors,
            "elapsed_s": elapsed,
        }
        print(f"results: {write_results('crash_storm', data)}")
    finally:
        if node is not None:
            node.cleanup()
        engine.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
