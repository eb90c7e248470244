"""Three-way merge of two branches that each changed 1,000 files: pfs against git.

For each repo size N a tree of N small files (1,000 per folder) is committed; branch
``a`` rewrites 1,000 files, master rewrites 1,000 others, and branch ``a`` is merged
into master. The same trees are built in a git repository on the same pool (checked
out, ``git merge`` running the default ``ort`` strategy). Timed:

* pfs: ``HistoryService.merge`` — the merge base, the two ``btrfs send --no-data``
  listings, the plan, 1,000 reflinked files written into master's working copy and the
  merge commit (a snapshot and a metadata transaction);
* git: ``git merge --no-edit a`` with its index and work tree up to date;
* the btrfs floor: the two bare ``btrfs send --no-data -p BASE SIDE | btrfs receive
  --dump`` pipelines pfs's merge runs, at once, output thrown away. The kernel's send
  compares the two trees leaf by leaf, and 1,000 changes spread over 100,000 files touch
  many more leaves than over 2,000, so this floor grows with the repo; flatness is
  judged on pfs / floor, as ``commit_latency.py`` judges commits against the snapshot.

Between runs master is reset to its pre-merge head (untimed: ``pfs reset``, ``git reset
--hard``). Both merges are checked to give the same files. The smallest size is 2,000
files: the smallest repo in which two branches can each change 1,000 different files.

Run as root from the repo root: PYTHONPATH=/work/main .venv/bin/python bench/merge_bench.py
Takes about 3 minutes (making and git-adding 100,000 files is most of it); --quick
stops at 10,000 files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
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
    timed,
    verdict,
    write_results,
)
from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.history import HistoryService
from pfs_volume.meta import SqliteStore
from pfs_volume.names import Ref
from pfs_volume.repos import RepoService

SIZES = [2_000, 10_000, 100_000]
CHANGED = 1_000
FILES_PER_DIR = 1_000
POOL_SIZE = 8 * 1024**3
REPS = 5
FLAT_FACTOR = 1.5
"""pfs at the largest size within this factor of pfs at the smallest."""
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "gc.auto=0"]


def path_of(i: int) -> str:
    return f"d{i // FILES_PER_DIR:04d}/f{i:06d}.txt"


def write_files(root: Path, indexes: range | list[int], tag: str) -> None:
    for i in indexes:
        target = root / path_of(i)
        if i % FILES_PER_DIR == 0 or not target.parent.exists():
            target.parent.mkdir(exist_ok=True)
        target.write_bytes(f"file {i} {tag}\n".encode() * 4)


def edits(count: int) -> tuple[list[int], list[int]]:
    """The files branch a and master rewrite: spread over the repo, never the same."""
    step = count // (2 * CHANGED)
    a = [k * 2 * step for k in range(CHANGED)]
    master = [k * 2 * step + step for k in range(CHANGED)]
    return a, master


def build_pfs(repos: RepoService, name: str, count: int) -> tuple[str, str]:
    """The pfs repo; (master's pre-merge head, a's head)."""
    repos.create_repo(name)
    write_files(repos.working_copy(name, "master"), range(count), "base")
    repos.commit_working_copy(name, "master", "base", "bench")
    repos.create_branch(name, "a", Ref("master"))
    a, master = edits(count)
    write_files(repos.working_copy(name, "a"), a, "a")
    repos.commit_working_copy(name, "a", "a", "bench")
    write_files(repos.working_copy(name, "master"), master, "master")
    repos.commit_working_copy(name, "master", "master", "bench")
    return repos.get_branch(name, "master").head or "", repos.get_branch(name, "a").head or ""


def build_git(root: Path, count: int) -> str:
    """The git repo, master checked out; master's pre-merge commit."""
    root.mkdir()
    run([*GIT, "init", "-q", "-b", "master"], cwd=root)
    write_files(root, range(count), "base")
    run([*GIT, "add", "-A"], cwd=root)
    run([*GIT, "commit", "-q", "-m", "base"], cwd=root)
    run([*GIT, "checkout", "-q", "-b", "a"], cwd=root)
    a, master = edits(count)
    write_files(root, a, "a")
    run([*GIT, "commit", "-q", "-am", "a"], cwd=root)
    run([*GIT, "checkout", "-q", "master"], cwd=root)
    write_files(root, master, "master")
    run([*GIT, "commit", "-q", "-am", "master"], cwd=root)
    return run([*GIT, "rev-parse", "HEAD"], cwd=root).strip()


def send_floor(base: Path, sides: list[Path]) -> None:
    """Run the bare listings a merge needs, at once; wait for all of them."""
    running = []
    for side in sides:
        send = subprocess.Popen(
            ["btrfs", "-q", "send", "--no-data", "-p", str(base), str(side)],
            stdout=subprocess.PIPE,
        )
        assert send.stdout is not None
        dump = subprocess.Popen(
            ["btrfs", "receive", "--dump"], stdin=send.stdout, stdout=subprocess.DEVNULL
        )
        send.stdout.close()
        running += [dump, send]
    for process in running:
        process.wait()


def digest(root: Path) -> str:
    """A hash of every file's path and bytes under ``root`` (``.git`` left out)."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            full = Path(folder, name)
            h.update(str(full.relative_to(root)).encode() + b"\0" + full.read_bytes())
    return h.hexdigest()


def measure(pool: BtrfsPool, repos: RepoService, count: int) -> dict[str, Any]:
    name = f"m{count}"
    history = HistoryService(repos)
    master_head, a_head = build_pfs(repos, name, count)
    base_head = repos.get_commit(name, master_head).parent or ""
    snapshots = [repos.commit_path(name, c) for c in (base_head, master_head, a_head)]
    git_root = pool.root / f"git-{count}"
    git_head = build_git(git_root, count)
    subprocess.run(["sync"], check=True)
    print(f"  {count:,} files built", flush=True)

    def pfs_merge() -> None:
        result = history.merge(name, "a", "master")
        assert result.outcome == "merged", result

    def pfs_reset() -> None:
        repos.reset_branch(name, "master", Ref(master_head))

    def git_merge() -> None:
        run([*GIT, "merge", "-q", "--no-edit", "a"], cwd=git_root)

    def git_reset() -> None:
        run([*GIT, "reset", "-q", "--hard", git_head], cwd=git_root)

    pfs_merge()
    git_merge()
    merged = repos.commit_path(name, repos.get_branch(name, "master").head or "")
    if digest(merged) != digest(git_root):
        raise RuntimeError(f"pfs and git merged {count:,} files differently")
    samples: dict[str, list[float]] = {"pfs merge": [], "git merge": [], "btrfs floor": []}
    for _ in range(REPS):
        pfs_reset()
        git_reset()
        subprocess.run(["sync"], check=True)
        samples["pfs merge"].append(timed(pfs_merge))
        samples["git merge"].append(timed(git_merge))
        samples["btrfs floor"].append(timed(lambda: send_floor(snapshots[0], snapshots[1:])))
    shutil.rmtree(git_root)
    return {
        "files": count,
        "samples": samples,
        "medians": {k: median(v) for k, v in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10,000 files")
    args = parser.parse_args()
    require_root()
    sizes = [s for s in SIZES if not args.quick or s <= 10_000]
    scratch = Path(tempfile.mkdtemp(prefix="pfs-merge-bench-"))
    root, image = prepare_pool(scratch / "state", POOL_SIZE)
    results = []
    try:
        notes = machine_notes(root)
        notes["git"] = run(["git", "--version"]).strip()
        print("machine:")
        print_notes(notes)
        pool = BtrfsPool(root)
        store = SqliteStore(root / "meta.db")
        try:
            repos = RepoService(store, pool)
            for count in sizes:
                results.append(measure(pool, repos, count))
        finally:
            store.close()
    finally:
        if image is not None:
            image.unmount()
        shutil.rmtree(scratch, ignore_errors=True)
    report(results, notes)


def report(results: list[dict[str, Any]], notes: dict[str, str]) -> None:
    rows = [
        [
            f"{r['files']:,}",
            fmt_seconds(r["medians"]["pfs merge"]),
            fmt_seconds(r["medians"]["git merge"]),
            fmt_seconds(r["medians"]["btrfs floor"]),
            fmt_ratio(r["medians"]["git merge"] / r["medians"]["pfs merge"]),
            fmt_ratio(r["medians"]["pfs merge"] / r["medians"]["btrfs floor"]),
        ]
        for r in results
    ]
    print(f"\n{CHANGED:,} files changed on each side, medians of {REPS} runs:")
    header = ["files", "pfs merge", "git merge", "btrfs floor", "git / pfs", "pfs / floor"]
    print(table(header, rows))
    small, large = results[0]["medians"], results[-1]["medians"]
    raw = large["pfs merge"] / small["pfs merge"]
    over_floor = (large["pfs merge"] / large["btrfs floor"]) / (
        small["pfs merge"] / small["btrfs floor"]
    )
    print(
        f"\npfs largest / smallest: {raw:.2f} (the floor: "
        f"{large['btrfs floor'] / small['btrfs floor']:.2f})"
    )
    verdicts = {
        f"pfs faster than git at {results[-1]['files']:,} files": (
            large["pfs merge"] < large["git merge"]
        ),
        f"pfs flat with size over the btrfs floor (pfs/floor largest / smallest = "
        f"{over_floor:.2f}, <= {FLAT_FACTOR})": over_floor <= FLAT_FACTOR,
    }
    print("\ntargets:")
    for text, ok in verdicts.items():
        print(f"  {verdict(ok)}  {text}")
    notes["load average at end"] = load_average()
    path = write_results("merge_bench", {"notes": notes, "results": results, "verdicts": verdicts})
    print(f"\nraw samples: {path}")


if __name__ == "__main__":
    main()
