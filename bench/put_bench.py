"""``pfs put`` in process: many small puts, and one large put with its final move timed.

    PYTHONPATH=. .venv/bin/python bench/put_bench.py [--small N] [--large-mib M]

Small: N puts of 4 KiB each (new files, then the same files again with other bytes),
each a whole ``FileService.put`` (upload, move into place, commit); the time per put
and the part of it spent before the commit (``write_file`` and the put log). Large: one
put of M MiB of random bytes; ``write_file`` is wrapped to time the upload and, where
the staging design is present, the final move (``upload._move_in``). Prints one JSON
object, so runs of two checkouts can be compared.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pfs_volume import files, upload
from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.files import FileService
from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService


def _timed_wrapper(module: Any, name: str, samples: list[float]) -> None:
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - start)

    setattr(module, name, timed)


def main() -> None:
    """Run both measurements on a fresh pool image and print the results as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large-mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as state:
        root, image = prepare_pool(Path(state), (args.large_mib * 3 + 1024) * 1024**2)
        try:
            store = SqliteStore(root / "meta.db")
            repos = RepoService(store, BtrfsPool(root))
            service = FileService(repos)
            repos.create_repo("r")
            service.put("r", "master", "seed", io.BytesIO(b"seed"))
            writes: list[float] = []
            moves: list[float] = []
            commits: list[float] = []
            _timed_wrapper(files, "write_file", writes)
            _timed_wrapper(repos, "commit_working_copy", commits)
            if hasattr(upload, "_move_in"):
                _timed_wrapper(upload, "_move_in", moves)
            totals: list[float] = []
            for round_ in range(2):
                for i in range(args.small):
                    body = io.BytesIO(os.urandom(4096))
                    start = time.perf_counter()
                    service.put("r", "master", f"small/{i % 50}/f{i}", body)
                    totals.append(time.perf_counter() - start)
                del round_
            small = {
                "puts": len(totals),
                "put_ms_median": statistics.median(totals) * 1e3,
                "put_ms_mean": statistics.fmean(totals) * 1e3,
                "write_file_ms_median": statistics.median(writes) * 1e3,
                "write_file_ms_mean": statistics.fmean(writes) * 1e3,
                "move_ms_median": statistics.median(moves) * 1e3 if moves else None,
                "put_minus_commit_ms_median": statistics.median(
                    t - c for t, c in zip(totals, commits[-len(totals) :], strict=True)
                )
                * 1e3,
            }
            writes.clear()
            moves.clear()
            big = Path(state) / "big.bin"
            with open(big, "wb") as out:
                for _ in range(args.large_mib):
                    out.write(os.urandom(1024**2))
            os.sync()
            with open(big, "rb") as source:
                start = time.perf_counter()
                service.put("r", "master", "large/big.bin", source)
                total = time.perf_counter() - start
            large = {
                "mib": args.large_mib,
                "put_s": total,
                "write_file_s": writes[0],
                "move_s": moves[0] if moves else None,
                "commit_s": total - writes[0],
            }
            print(json.dumps({"python": sys.version.split()[0], "small": small, "large": large}))
            store.close()
        finally:
            if image is not None:
                image.unmount()


if __name__ == "__main__":
    main()
