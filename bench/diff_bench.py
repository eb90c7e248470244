"""Diff of two commits after a one-file change: pfs against ``diff -rq`` and ``rsync``.

A repo of N small files is committed (read-only snapshot A), one file is rewritten and
committed again (B). Timed: pfs's ``changes(A, B)`` (``btrfs send --no-data -p A B |
btrfs receive --dump``, then the classifier), ``diff -rq A B`` and
``rsync -rcn --delete A/ B/`` (checksums every file, changes nothing). Each answer is
checked to name the one changed file. The page cache is warm (one untimed run of each
first), which flatters the two tree walks: a cold cache would make them far slower,
while pfs reads only the changed metadata.

Run as root from the repo root: PYTHONPATH=/work/main .venv/bin/python bench/diff_bench.py
Takes under a minute (making 100,000 files is most of it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
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
from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.btrfs.changes import changes, dump_lines
from pfs_volume.diff import Change

SIZES = [1_000, 100_000]
FILES_PER_DIR = 1_000
POOL_SIZE = 4 * 1024**3
"""Sparse; 100,000 small files take well under 1 GiB of metadata."""
PFS_REPS, WALK_REPS = 7, 3
SPEEDUP_TARGET = 50
"""At the largest size pfs must be this many times faster than each baseline."""
FLAT_FACTOR = 2.0
"""pfs at the largest size within this factor of pfs at the smallest."""


def make_repo(pool: BtrfsPool, count: int) -> tuple[Path, Path, str]:
    """A working copy of ``count`` small files committed as A, one file rewritten and
    committed as B; (A, B, the changed file's path)."""
    work = pool.root / f"work-{count}"
    pool.create_subvolume(work)
    for i in range(count):
        folder = work / f"d{i // FILES_PER_DIR:04d}"
        if i % FILES_PER_DIR == 0:
            folder.mkdir()
        (folder / f"f{i:06d}.txt").write_bytes(f"file {i} of {count}\n".encode() * 4)
    a = pool.root / f"A-{count}"
    pool.snapshot(work, a, readonly=True)
    changed = f"d{(count // 2) // FILES_PER_DIR:04d}/f{count // 2:06d}.txt"
    (work / changed).write_bytes(b"changed\n")
    b = pool.root / f"B-{count}"
    pool.snapshot(work, b, readonly=True)
    subprocess.run(["sync"], check=True)
    return a, b, changed


def run_walk(args: list[str]) -> str:
    """Run a tree-walking baseline; its stdout (``diff`` exits 1 when files differ)."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def tools(a: Path, b: Path, changed: str) -> dict[str, tuple[Callable[[], object], int]]:
    """Each tool's action and how many runs to time, checking its answer once first."""
    diff_args = ["diff", "-rq", str(a), str(b)]
    rsync_args = ["rsync", "-rcn", "--delete", "--out-format=%n", f"{a}/", f"{b}/"]
    if changes(a, b) != [Change(changed, "modified")]:
        raise RuntimeError(f"pfs found {changes(a, b)}, not just {changed}")
    if run_walk(diff_args).strip() != f"Files {a}/{changed} and {b}/{changed} differ":
        raise RuntimeError(f"diff -rq found {run_walk(diff_args)!r}")
    if run_walk(rsync_args).strip() != changed:
        raise RuntimeError(f"rsync found {run_walk(rsync_args)!r}")
    return {
        "pfs changes()": (lambda: changes(a, b), PFS_REPS),
        "diff -rq": (lambda: run_walk(diff_args), WALK_REPS),
        "rsync -rcn --delete": (lambda: run_walk(rsync_args), WALK_REPS),
    }


def measure(pool: BtrfsPool, count: int) -> dict[str, Any]:
    start = time.perf_counter()
    a, b, changed = make_repo(pool, count)
    print(f"  {count:,} files made in {time.perf_counter() - start:.1f} s", flush=True)
    samples: dict[str, list[float]] = {}
    for name, (action, reps) in tools(a, b, changed).items():
        action()  # warm the page cache
        samples[name] = [timed(action) for _ in range(reps)]
    return {
        "files": count,
        "dump lines": len(list(dump_lines(a, b))),
        "samples": samples,
        "medians": {name: median(values) for name, values in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    require_root()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is missing: apt-get install -y rsync")
    scratch = Path(tempfile.mkdtemp(prefix="pfs-diff-bench-"))
    root, image = prepare_pool(scratch / "state", POOL_SIZE)
    results = []
    try:
        notes = machine_notes(root)
        notes["rsync"] = subprocess.run(
            ["rsync", "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
        print("machine:")
        print_notes(notes)
        pool = BtrfsPool(root)
        for count in SIZES:
            results.append(measure(pool, count))
    finally:
        if image is not None:
            image.unmount()
        shutil.rmtree(scratch, ignore_errors=True)
    report(results, notes)


def report(results: list[dict[str, Any]], notes: dict[str, str]) -> None:
    baselines = ["diff -rq", "rsync -rcn --delete"]
    rows = []
    for result in results:
        medians = result["medians"]
        pfs = medians["pfs changes()"]
        rows.append(
            [
                f"{result['files']:,}",
                str(result["dump lines"]),
                fmt_seconds(pfs),
                *(fmt_seconds(medians[name]) for name in baselines),
                *(fmt_ratio(medians[name] / pfs) for name in baselines),
            ]
        )
    print(f"\nOne file changed, medians of {PFS_REPS} (pfs) or {WALK_REPS} runs, warm cache:")
    header = ["files", "dump lines", "pfs", *baselines, *(f"{n} / pfs" for n in baselines)]
    print(table(header, rows))

    small, large = results[0]["medians"], results[-1]["medians"]
    flatness = large["pfs changes()"] / small["pfs changes()"]
    verdicts = {
        f"pfs flat with size (largest / smallest = {flatness:.2f}, <= {FLAT_FACTOR})": (
            flatness <= FLAT_FACTOR
        ),
        **{
            f">= {SPEEDUP_TARGET}x faster than {name} at {results[-1]['files']:,} files": (
                large[name] / large["pfs changes()"] >= SPEEDUP_TARGET
            )
            for name in baselines
        },
    }
    print("\ntargets:")
    for text, ok in verdicts.items():
        print(f"  {verdict(ok)}  {text}")
    notes["load average at end"] = load_average()
    path = write_results(
        "diff_bench",
        {"notes": notes, "results": results, "verdicts": verdicts},
    )
    print(f"\nraw samples: {path}")


if __name__ == "__main__":
    main()
