"""`docker run` with a pfs volume against the same with a `local` volume.

A private Docker engine and a real ``pfs serve``; the two kinds of run alternate (which
one goes first flips every round) so that drift hits both alike. Timed from the client:
``docker run --rm`` start to exit. Run as root:
PYTHONPATH=/work/main .venv/bin/python bench/docker_run.py
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
from pfs_volume.config import PLUGIN_DIR
from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode, unique_driver_name

TARGET_RATIO = 1.15
COMMANDS = {
    "true": ["true"],
    "write one file": ["sh", "-c", "echo hello > /data/greeting"],
}


def commit_count(node: PfsNode, repo: str) -> int:
    count: int = node.api("GET", f"/v1/repos/{repo}").json()["commit_count"]
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each kind (20)")
    args = parser.parse_args()
    require_root()
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="pfsbench-docker-"))
    node = PfsNode(
        state / "pfs", unique_driver_name("pfsbench"), pool_size="1G", plugin_dir=PLUGIN_DIR
    )
    engine = DockerEngine(state / "docker")
    try:
        node.start()
        engine.start()
        image = engine.busybox_image()
        notes = machine_notes(state)
        volumes = {"pfs": f"{node.driver_name}/bench@master", "local": "benchlocal"}
        print("docker run: pfs volume vs local volume (private dockerd, busybox)")
        print_notes(notes)
        samples: dict[str, dict[str, list[float]]] = {}
        commits: dict[str, int] = {}
        for command, argv in COMMANDS.items():
            samples[command] = {kind: [] for kind in volumes}
            for kind in volumes:  # untimed: creates the volumes and warms the caches
                engine.run("-v", f"{volumes[kind]}:/data", image, *argv)
            before = commit_count(node, "bench")
            for round_ in range(args.runs):
                kinds = list(volumes) if round_ % 2 == 0 else list(reversed(volumes))
                for kind in kinds:
                    run_args = ("-v", f"{volumes[kind]}:/data", image, *argv)
                    samples[command][kind].append(timed(lambda a=run_args: engine.run(*a)))
            commits[command] = commit_count(node, "bench") - before
        rows = []
        results: dict[str, Any] = {}
        for command, by_kind in samples.items():
            pfs, local = median(by_kind["pfs"]), median(by_kind["local"])
            ratio = pfs / local
            rows.append(
                [
                    command,
                    str(args.runs),
                    fmt_seconds(local),
                    fmt_seconds(pfs),
                    fmt_ratio(ratio),
                    str(commits[command]),
                ]
            )
            results[command] = {"samples": by_kind, "ratio": ratio, "pfs_commits": commits[command]}
        print(f"\nmedian wall time of `docker run --rm` (pfs volume {volumes['pfs']})")
        print(table(["command", "runs", "local", "pfs", "pfs/local", "pfs commits"], rows))
        trivial = results["true"]["ratio"]
        print(
            f"\ntarget: pfs/local <= {TARGET_RATIO} for `true`: {trivial:.2f}  "
            f"{verdict(trivial <= TARGET_RATIO)}"
        )
        elapsed = time.monotonic() - started
        print(f"total run time {elapsed:.0f} s")
        notes["load average at end"] = load_average()
        print(f"load average at end: {notes['load average at end']}")
        path = write_results(
            "docker_run",
            {
                "machine": notes,
                "results": results,
                "target_ratio": TARGET_RATIO,
                "elapsed_s": elapsed,
            },
        )
        print(f"results: {path}")
    finally:
        engine.stop()
        node.cleanup()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
