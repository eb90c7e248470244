"""Where a ``pfs`` verb's start-up goes: a ladder of processes, each importing one step
more, for this tree and the old one.

Run from the repo root: PYTHONPATH=. .venv/bin/python bench/cli_breakdown.py [--runs 30]

Each step is a whole ``python -c`` process of this venv's interpreter, run from a
neutral folder with its bytecode in a private cache; the steps take turns in every
round, 2 warm-up rounds, median of --runs. A step's cost is its median less the one
before it. No daemon: the call itself is in bench/cli_startup.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench._common import (
    fmt_seconds,
    load_average,
    machine_notes,
    median,
    print_notes,
    table,
    write_results,
)

TREE = Path(__file__).resolve().parent.parent
PYTHON = TREE / ".venv" / "bin" / "python"
NEW = [
    ("python -S -c pass", ["-S", "-c", "pass"]),
    ("python -c pass (site)", ["-c", "pass"]),
    ("+ import argparse", ["-c", "import argparse"]),
    ("+ json, socket", ["-c", "import argparse, json, socket"]),
    ("+ pfs_volume.cli.main", ["-c", "import argparse, json, socket, pfs_volume.cli.main"]),
    ("+ the log verb's module", ["-c", "import pfs_volume.cli.main, pfs_volume.cli.commits"]),
]
"""This tree's ladder (PYTHONPATH this tree)."""
OLD = [
    ("old: + import click", ["-c", "import click"]),
    ("old: + pfs_volume.cli.main", ["-c", "import click, pfs_volume.cli.main"]),
    ("old: + the log verb's module", ["-c", "import pfs_volume.cli.main, pfs_volume.cli.commits"]),
]
"""The old tree's steps above ``python -c pass`` (PYTHONPATH --old-tree)."""


def run_once(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """One process: its wall and CPU seconds. Raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="processes per step")
    parser.add_argument("--old-tree", type=Path, default=Path("/work/main"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pfsbench-ladder-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pyc")
    steps = [(label, cmd, str(TREE)) for label, cmd in NEW]
    old_ok = (args.old_tree / "pfs_volume" / "cli").is_dir()
    if old_ok:
        steps += [(label, cmd, str(args.old_tree)) for label, cmd in OLD]
    samples: dict[str, dict[str, list[float]]] = {s[0]: {"wall": [], "cpu": []} for s in steps}
    notes = machine_notes(work)
    print("pfs start-up, step by step")
    print_notes(notes)
    for round_number in range(args.runs + 2):
        shift = round_number % len(steps)
        for label, cmd, path in steps[shift:] + steps[:shift]:
            try:
                wall, cpu = run_once([str(PYTHON), *cmd], {**env, "PYTHONPATH": path}, work)
            except subprocess.CalledProcessError:
                if label.startswith("old"):  # the old tree's click is not in this venv
                    continue
                raise
            if round_number >= 2:
                samples[label]["wall"].append(wall)
                samples[label]["cpu"].append(cpu)
    rows, medians = [], {}
    previous = None
    for label, _cmd, _path in steps:
        got = samples[label]
        if not got["cpu"]:
            continue
        medians[label] = {"wall": median(got["wall"]), "cpu": median(got["cpu"])}
        if label.startswith("old: + import click"):
            previous = medians["python -c pass (site)"]
        step = None if previous is None else medians[label]["cpu"] - previous["cpu"]
        rows.append(
            [
                label,
                fmt_seconds(medians[label]["wall"]),
                fmt_seconds(min(got["wall"])),
                fmt_seconds(medians[label]["cpu"]),
                "" if step is None else fmt_seconds(step),
            ]
        )
        previous = medians[label]
    print(table(["process", "wall", "fastest", "cpu", "cpu step"], rows))
    print(f"  load average at end: {load_average()}")
    results = {
        "machine": {**notes, "load average at end": load_average()},
        "runs": args.runs,
        "old tree": str(args.old_tree) if old_ok else None,
        "samples": samples,
        "medians": medians,
    }
    print(f"  results: {write_results('cli_breakdown', results)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
