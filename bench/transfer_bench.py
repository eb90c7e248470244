"""Export and import throughput against a bare ``btrfs send`` / ``btrfs receive``.

A repo of 5 commits (1 GiB in 1,024 files of new data, then 4 commits each rewriting
10 files of 1 MiB) on one pool, imported into a second pool. Both sides move the same
chain of incremental send streams through a file on the host disk:

    bare send:     btrfs send [-p PARENT] SNAPSHOT > file      (for each commit)
    pfs export:    pfs's export_repo(...)          > file
    bare receive:  btrfs receive DIR < file                    (for each commit)
    pfs import:    pfs's import_repo(file)   (receive, checks, records, one transaction)

Target: pfs at least 0.8 of the bare throughput both ways. Run as root:

    PYTHONPATH=/work/main .venv/bin/python bench/transfer_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench._common import median, require_root, table
from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.btrfs.stream_check import StreamChecker
from pfs_volume.meta import SqliteStore
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.transfer import export_repo, import_repo
from pfs_volume.volumes import VolumeService

MiB = 1024 * 1024
REPS = 4


def build_history(volumes: VolumeService, files: int) -> list[str]:
    """Commits on repo ``src``, oldest first."""
    path = volumes.mount("pfs/src", "m0")
    for n in range(files):
        (path / f"f{n:05}").write_bytes(os.urandom(MiB))
    volumes.unmount("pfs/src", "m0")
    for round_ in range(1, 5):
        path = volumes.mount("pfs/src", f"m{round_}")
        for n in range(10):
            (path / f"f{(round_ * 37 + n) % files:05}").write_bytes(os.urandom(MiB))
        volumes.unmount("pfs/src", f"m{round_}")
    subprocess.run(["sync"], check=True)
    return [c.id for c in reversed(volumes.repos.log("src", parse_ref("master")))]


def bare_send(repos: RepoService, chain: list[str], out: Path) -> float:
    start = time.perf_counter()
    with open(out, "wb") as handle:
        parent = None
        for commit in chain:
            args = ["btrfs", "send", "-q"]
            if parent is not None:
                args += ["-p", str(repos.commit_path("src", parent))]
            subprocess.run(
                [*args, str(repos.commit_path("src", commit))], stdout=handle, check=True
            )
            parent = commit
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - start


def pfs_export(repos: RepoService, out: Path) -> float:
    start = time.perf_counter()
    with open(out, "wb") as handle:
        for chunk in export_repo(repos, "src"):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - start


def bare_receive(dest: RepoService, stream: Path, into: Path) -> float:
    into.mkdir()
    start = time.perf_counter()
    with open(stream, "rb") as handle:
        # btrfs receive takes a whole chain from one input with -e (end at the marker);
        # without -e it reads every stream in the file.
        subprocess.run(["btrfs", "receive", "-q", str(into)], stdin=handle, check=True)
    subprocess.run(["btrfs", "filesystem", "sync", str(into)], check=True)
    return time.perf_counter() - start


def check_alone(repos: RepoService, commit: str, scratch: Path) -> tuple[float, int]:
    """Seconds pfs's stream check takes over the full stream of ``commit`` (read from a
    file, nothing received), and the stream's size."""
    with open(scratch, "wb") as handle:
        subprocess.run(
            ["btrfs", "send", "-q", str(repos.commit_path("src", commit))],
            stdout=handle,
            check=True,
        )
    checker = StreamChecker(commit, None, lambda: None)
    start = time.perf_counter()
    with open(scratch, "rb") as handle:
        for _ in checker.check(iter(lambda: handle.read(MiB), b"")):
            pass
    seconds = time.perf_counter() - start
    size = scratch.stat().st_size
    scratch.unlink()
    return seconds, size


def pfs_import(dest: RepoService, stream: Path, name: str) -> float:
    start = time.perf_counter()
    with open(stream, "rb") as handle:
        import_repo(dest, handle, name)
    dest.pool.sync(dest.pool.root)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 MiB instead of 1 GiB")
    files = 128 if parser.parse_args().quick else 1024
    require_root()
    with tempfile.TemporaryDirectory(prefix="pfs-transfer-") as tmp:
        work = Path(tmp)
        src_root, src_image = prepare_pool(work / "src", 4 * 1024**3)
        dst_root, dst_image = prepare_pool(work / "dst", 16 * 1024**3)
        # Bare receives go to a pool of their own: their copies claim the same received
        # UUIDs, and pfs refuses to build on a subvolume that is no copy of its commit.
        bare_root, bare_image = prepare_pool(work / "bare", 16 * 1024**3)
        src_store, dst_store = SqliteStore(src_root / "meta.db"), SqliteStore(dst_root / "meta.db")
        try:
            repos = RepoService(src_store, BtrfsPool(src_root))
            dest = RepoService(dst_store, BtrfsPool(dst_root))
            chain = build_history(VolumeService(repos, src_store, "pfs"), files)
            samples: dict[str, list[float]] = {
                k: [] for k in ("bare send", "pfs export", "bare receive", "pfs import")
            }
            sizes: dict[str, int] = {}
            for rep in range(REPS):
                bare_file, pfs_file = work / "bare.stream", work / "pfs.export"
                # Alternate which goes first: caches and a fuller pool favour one side.
                first = rep % 2 == 0
                for kind in ("bare", "pfs") if first else ("pfs", "bare"):
                    subprocess.run(["sync"], check=True)
                    if kind == "bare":
                        samples["bare send"].append(bare_send(repos, chain, bare_file))
                    else:
                        samples["pfs export"].append(pfs_export(repos, pfs_file))
                sizes = {"bare": bare_file.stat().st_size, "pfs": pfs_file.stat().st_size}
                for kind in ("bare", "pfs") if first else ("pfs", "bare"):
                    subprocess.run(["sync"], check=True)
                    if kind == "bare":
                        target = bare_root / f"bare{rep}"
                        samples["bare receive"].append(bare_receive(dest, bare_file, target))
                    else:
                        samples["pfs import"].append(pfs_import(dest, pfs_file, f"copy{rep}"))
                bare_file.unlink()
                pfs_file.unlink()
            rows = []
            for label, seconds in samples.items():
                kind = "bare" if label.startswith("bare") else "pfs"
                throughput = sizes[kind] / median(seconds) / MiB
                rows.append([label, f"{median(seconds):.2f} s", f"{throughput:,.0f} MiB/s"])
            print(
                f"{len(chain)} commits, {files} MiB of data; stream {sizes['bare'] / MiB:,.0f}"
                f" MiB bare, {sizes['pfs'] / MiB:,.0f} MiB as a pfs export file;"
                f" median of {REPS}"
            )
            print(table(["step", "time", "throughput"], rows))
            seconds, size = check_alone(repos, chain[0], work / "first.stream")
            print(
                f"pfs's stream check alone (the first commit's {size / MiB:,.0f} MiB full "
                f"stream, from the page cache): {seconds:.2f} s, {size / seconds / MiB:,.0f} MiB/s"
            )
            for bare, pfs in (("bare send", "pfs export"), ("bare receive", "pfs import")):
                ratio = median(samples[bare]) / median(samples[pfs])
                verdict = "MET" if ratio >= 0.8 else "MISSED"
                print(f"{pfs} / {bare} throughput: {ratio:.2f} (target >= 0.8)  {verdict}")
        finally:
            src_store.close()
            dst_store.close()
            src_image.unmount() if src_image else None
            dst_image.unmount() if dst_image else None
            bare_image.unmount() if bare_image else None


if __name__ == "__main__":
    main()
