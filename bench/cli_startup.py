"""How long a whole ``pfs`` process takes for a verb that makes one API call.

Run as root from the repo root: PYTHONPATH=. .venv/bin/python bench/cli_startup.py

A private daemon (tests/pfs_node.py, a unique driver name) with one repo of --commits
commits (made through the API's file put: one commit each). Then, as separate processes,
median of --runs, the variants taking turns in every round:

* floor: ``python -c pass`` (the interpreter and site, which every variant pays), and
  ``python -S -c pass`` (the interpreter alone: what site costs is the difference);
* pfs: this tree's ``pfs`` console script (in the dev venv: an editable install);
* wheel: ``pfs`` from this tree's wheel, installed in a new venv (no dependencies: the
  client verbs import none), as a system install has it;
* this tree / old tree: ``python -c 'from pfs_volume.cli.main import main; main()'``
  with PYTHONPATH set to this tree or to --old-tree (default /work/main), so the old
  import path is timed the same way as the new one.

for ``pfs --version``, ``pfs repo list`` and ``pfs log REPO --limit 50``. Each process's
wall time and its CPU time (user + system, less skewed by a busy machine) are recorded.
The outputs of the old and new tree are checked to be the same. Target: the ``pfs``
console script at most 60 ms wall for both verbs that call the API.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
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
from pfs_volume.cli.client import ApiClient
from tests.pfs_node import PfsNode, unique_driver_name

TREE = Path(__file__).resolve().parent.parent
PYTHON = TREE / ".venv" / "bin" / "python"
PFS = TREE / ".venv" / "bin" / "pfs"
REPO = "bench"
TARGET = 0.060
"""Seconds: the most a one-call verb's whole process may take."""
CALLS = ("repo list", "log")
MAIN = "import sys; from pfs_volume.cli.main import main; sys.exit(main())"
FLOORS = {"floor": "python -c pass", "floor -S": "python -S -c pass"}
"""The variants that run no pfs, and how the table names them."""


def make_commits(client: ApiClient, count: int) -> float:
    """``count`` commits on REPO/master, one small file put each; the seconds it took."""
    start = time.perf_counter()
    client.create_repo(REPO, "cli start-up benchmark", None)
    for number in range(count):
        client.put_file(REPO, "master", f"f{number % 10}", io.BytesIO(b"%d\n" % number), "")
    return time.perf_counter() - start


def install_wheel(where: Path) -> Path:
    """Build this tree's wheel and install it, without its dependencies (the client
    verbs import none), into a new venv under ``where``, as a system install would put
    ``pfs`` on PATH (issue 15); that venv's ``pfs`` script."""
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "-w", where / "dist", TREE],
        check=True,
        capture_output=True,
    )
    wheel = next((where / "dist").glob("pfs-*.whl"))
    # Without PYTHONPATH: pip would take this tree's pfs.egg-info for pfs installed.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([PYTHON, "-m", "venv", where / "venv"], check=True, env=clean)
    pip = where / "venv" / "bin" / "pip"
    subprocess.run(
        [pip, "install", "-q", "--no-deps", wheel], check=True, capture_output=True, env=clean
    )
    return where / "venv" / "bin" / "pfs"


def variants(
    old_tree: Path | None, wheel_pfs: Path | None
) -> dict[str, tuple[list[str], str | None]]:
    """Each variant's command prefix and the PYTHONPATH it runs with."""
    found = {
        "floor": ([str(PYTHON), "-c", "pass"], None),
        "floor -S": ([str(PYTHON), "-S", "-c", "pass"], None),
        "pfs": ([str(PFS)], str(TREE)),
        "this tree": ([str(PYTHON), "-c", MAIN], str(TREE)),
    }
    if wheel_pfs is not None:
        found["wheel"] = ([str(wheel_pfs)], None)
    if old_tree is not None:
        found["old tree"] = ([str(PYTHON), "-c", MAIN], str(old_tree))
    return found


def runs_here(variant: tuple[list[str], str | None], env: dict[str, str], cwd: Path) -> bool:
    """Whether a variant's ``pfs --version`` runs with this venv's Python."""
    prefix, path = variant
    run_env = {**env, "PYTHONPATH": path} if path else env
    done = subprocess.run(
        [*prefix, "--version"], env=run_env, cwd=cwd, capture_output=True, check=False
    )
    return done.returncode == 0


def run_once(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Run a process in ``cwd`` (with ``-c``, the current folder comes first on
    ``sys.path``: not a tree's root); its wall seconds, CPU seconds and stdout. Raises
    if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000, help="commits in the repo")
    parser.add_argument("--runs", type=int, default=30, help="processes per verb and variant")
    parser.add_argument("--old-tree", type=Path, default=Path("/work/main"))
    parser.add_argument(
        "--no-wheel", action="store_true", help="leave out the wheel installed in a new venv"
    )
    args = parser.parse_args()
    require_root()
    old_tree = args.old_tree if (args.old_tree / "pfs_volume" / "cli").is_dir() else None
    state = Path(tempfile.mkdtemp(prefix="pfsbench-cli-"))
    node = PfsNode(state / "state", unique_driver_name("pfsbench"))
    try:
        node.start()
        notes = machine_notes(state)
        print("pfs start-up: whole processes of one-call verbs")
        print_notes(notes)
        made = make_commits(ApiClient(str(node.api_socket)), args.commits)
        print(f"  made {args.commits:,} commits in {made:.1f} s")
        # Bytecode as an installed package has it: a private cache, filled by the warm-up
        # runs (this machine's PYTHONDONTWRITEBYTECODE would compile every module anew).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PFS_API=str(node.api_socket), PYTHONPYCACHEPREFIX=str(state / "pyc"))
        verbs = {
            "--version": ["--version"],
            "repo list": ["repo", "list"],
            "log": ["log", REPO, "--limit", "50"],
        }
        wheel_pfs = None if args.no_wheel else install_wheel(state / "wheel")
        kinds = variants(old_tree, wheel_pfs)
        if old_tree is not None and not runs_here(kinds["old tree"], env, state):
            # The old tree's parser (click, say) is not in this venv any more.
            print(f"  old tree {old_tree} does not run with {PYTHON}: left out")
            del kinds["old tree"]
            old_tree = None
        jobs = [(kind, "--version") for kind in FLOORS]
        jobs += [(kind, verb) for kind in kinds if kind not in FLOORS for verb in verbs]
        samples: dict[str, dict[str, dict[str, list[float]]]] = {}
        for kind, verb in jobs:
            samples.setdefault(kind, {})[verb] = {"wall": [], "cpu": []}
        outputs: dict[tuple[str, str], str] = {}
        for round_number in range(args.runs + 2):
            shift = round_number % len(jobs)
            for kind, verb in jobs[shift:] + jobs[:shift]:
                prefix, path = kinds[kind]
                command = prefix if kind in FLOORS else prefix + verbs[verb]
                run_env = {**env, "PYTHONPATH": path} if path else env
                wall, cpu, out = run_once(command, run_env, state)
                if round_number < 2:
                    outputs[(kind, verb)] = out
                    continue
                samples[kind][verb]["wall"].append(wall)
                samples[kind][verb]["cpu"].append(cpu)
        same = {
            verb: outputs[("old tree", verb)] == outputs[("this tree", verb)]
            for verb in verbs
            if old_tree is not None
        }
        report(samples, verbs, same)
        results: dict[str, Any] = {
            "machine": {**notes, "load average at end": load_average()},
            "commits": args.commits,
            "seconds to make them": made,
            "runs": args.runs,
            "old tree": str(old_tree) if old_tree else None,
            "variants": {k: {"command": v[0], "PYTHONPATH": v[1]} for k, v in kinds.items()},
            "samples": samples,
            "fastest wall": {
                kind: {verb: min(m["wall"]) for verb, m in by_verb.items()}
                for kind, by_verb in samples.items()
            },
            "medians": {
                kind: {
                    verb: {m: median(v) for m, v in by_metric.items()}
                    for verb, by_metric in by_verb.items()
                }
                for kind, by_verb in samples.items()
            },
            "old and new print the same": same,
            "targets": {
                f"pfs {verb} <= 60 ms": median(samples["pfs"][verb]["wall"]) <= TARGET
                for verb in CALLS
            },
        }
        print(f"  results: {write_results('cli_startup', results)}")
    finally:
        node.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def report(
    samples: dict[str, dict[str, dict[str, list[float]]]],
    verbs: dict[str, list[str]],
    same: dict[str, bool],
) -> None:
    """Print the medians per verb and variant (and the fastest run: what a quiet machine
    would show), and the verdicts."""

    def row(label: str, by_metric: dict[str, list[float]]) -> list[str]:
        wall, cpu = by_metric["wall"], by_metric["cpu"]
        return [label, *(fmt_seconds(x) for x in (median(wall), min(wall), median(cpu)))]

    rows = [row(label, samples[kind]["--version"]) for kind, label in FLOORS.items()]
    for verb in verbs:
        rows += [
            row(f"{kind}: pfs {verb}", samples[kind][verb])
            for kind in samples
            if kind not in FLOORS
        ]
    print(table(["process", "wall", "fastest", "cpu"], rows))
    for verb in CALLS:
        wall = median(samples["pfs"][verb]["wall"])
        print(f"  target pfs {verb} <= 60 ms wall: {fmt_seconds(wall)} {verdict(wall <= TARGET)}")
    for verb, ok in same.items():
        print(f"  old and new print the same for pfs {verb}: {ok}")
    print(f"  load average at end: {load_average()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
