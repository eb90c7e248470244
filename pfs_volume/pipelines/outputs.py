"""Datum outputs on the pool: each datum's scratch subvolume, the outputs kept read-only
for reuse (``<pool>/pipelines/<pipeline>/datums/<datum>/<job>``) and collected when no
job can reuse them, and the combining of a job's outputs into one tree.

A container wrote every tree here: none is walked through a link, and a subvolume is
deleted as the subvolume it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import DatumFailed, StorageError
from pfs_volume.pipelines.jobs import DatumResult

log = logging.getLogger(__name__)

CP_BATCH = 500
"""Datum outputs one ``cp`` combines (well inside the kernel's argument limit)."""
_COLLECTING = threading.Lock()
"""One collection of datum outputs at a time (after a job, and ``pfs gc``)."""


class DatumOutputs:
    """The pipelines' folder of the pool: scratch, kept outputs and job logs.

    Args:
        pool: the btrfs pool (scratch and kept outputs are its subvolumes).
        root: the pipelines' folder in it (``<pool>/pipelines``), made if missing.
    """

    def __init__(self, pool: BtrfsPool, root: Path) -> None:
        self.pool = pool
        self.root = root
        self.root.mkdir(exist_ok=True)

    def kept(self, pipeline: str, datum_id: str, job_id: str) -> Path:
        """Where the output of datum ``datum_id`` made by job ``job_id`` is kept."""
        return self.root / pipeline / "datums" / datum_id / job_id

    def of(self, pipeline: str, result: DatumResult) -> Path:
        """Where a datum result's output is kept."""
        return self.kept(pipeline, result.id, result.job)

    def scratch(self, pipeline: str, job_id: str) -> Path:
        """A job's scratch folder (datum outputs being written, datum folders)."""
        return self.root / pipeline / "scratch" / job_id

    def fresh(self, path: Path) -> None:
        """Make ``path`` an empty subvolume (a datum try's ``/pfs/out``)."""
        self.drop_subvolume(path)
        self.pool.create_subvolume(path)

    def drop_subvolume(self, path: Path) -> None:
        """Delete ``path`` when it is a subvolume."""
        if self.pool.is_subvolume(path):
            self.pool.delete_subvolume(path)

    def keep(self, pipeline: str, result: DatumResult, scratch: Path) -> None:
        """Keep a successful datum's output: a read-only snapshot of its scratch."""
        kept = self.of(pipeline, result)
        kept.parent.mkdir(parents=True, exist_ok=True)
        self.pool.snapshot(scratch, kept, readonly=True)

    def collect(self, pipeline: str, keep: set[tuple[str, str]], live: set[str]) -> int:
        """Delete a pipeline's kept datum outputs that nothing needs; how many went.

        Args:
            pipeline: the pipeline's name.
            keep: ``(datum id, job id)`` of the outputs a later job may reuse.
            live: ids of the pipeline's queued and running jobs: what they make stays.
        """
        folder = self.root / pipeline / "datums"
        freed = 0
        with _COLLECTING:
            if not folder.is_dir():
                return 0
            for datum in _children(folder):
                for made in _children(datum):
                    if (datum.name, made.name) in keep or made.name in live:
                        continue
                    # A container wrote this tree: it is deleted as the subvolume it is,
                    # never walked through a link (``_children`` lists without following).
                    if self.pool.is_subvolume(made):
                        self.pool.delete_subvolume(made)
                    else:
                        self.pool.delete_tree(made)
                    freed += 1
                if not any(datum.iterdir()):
                    datum.rmdir()
        if freed:
            log.info("pipeline=%s %d datum output(s) no job can reuse deleted", pipeline, freed)
        return freed

    def drop_pipeline(self, pipeline: str) -> None:
        """Delete everything a pipeline kept here: datum outputs, job scratch and its
        jobs' logs."""
        folder = self.root / pipeline
        with _COLLECTING:
            if not folder.is_dir() or folder.is_symlink():
                return
            self.pool.delete_tree(folder)
            log.info("pipeline=%s its datum outputs, scratch and logs deleted", pipeline)

    def drop_scratch(self, pipeline: str, job_id: str) -> None:
        """Delete a job's scratch (what is left there is no output of anything)."""
        folder = self.scratch(pipeline, job_id)
        if folder.exists():
            self.pool.delete_tree(folder)

    def combine(self, pipeline: str, job_id: str, results: Sequence[DatumResult]) -> Path:
        """Build the union of the datums' kept outputs aside, as the writable subvolume
        ``<scratch>/combined``, and return it.

        Raises:
            DatumFailed: a path was written by more than one datum (carrying ``results``).
            StorageError: the outputs could not be copied together.
        """
        owners: dict[str, DatumResult] = {}
        clashes = []
        for result in results:
            for path in _files(self.of(pipeline, result)):
                if path in owners:
                    clashes.append(
                        f"{path} (datums {datum_label(owners[path])} and {datum_label(result)})"
                    )
                owners.setdefault(path, result)
        if clashes:
            raise DatumFailed(
                f"{len(clashes)} path(s) written by more than one datum: " + "; ".join(clashes[:5]),
                results,
            )
        # The whole output is built aside first and committed as one tree, so that the
        # output branch never holds half an output.
        combined = self.scratch(pipeline, job_id) / "combined"
        combined.parent.mkdir(parents=True, exist_ok=True)
        self.drop_subvolume(combined)
        filled = [self.of(pipeline, r) for r in results if any(self.of(pipeline, r).iterdir())]
        # The first datum's output becomes the combined tree by a writable snapshot (O(1));
        # the others are copied in, one cp per batch (a process start costs more than a
        # datum's reflinks).
        if filled:
            self.pool.snapshot(filled[0], combined, readonly=False)
        else:
            self.pool.create_subvolume(combined)
        try:
            sources = [f"{path}/." for path in filled[1:]]
            for start in range(0, len(sources), CP_BATCH):
                subprocess.run(
                    [
                        "cp",
                        "-a",
                        "--reflink=auto",
                        *sources[start : start + CP_BATCH],
                        f"{combined}/",
                    ],
                    check=True,
                    capture_output=True,
                )
        except (OSError, subprocess.CalledProcessError) as exc:
            self.pool.delete_subvolume(combined)
            detail = getattr(exc, "stderr", b"") or b""
            raise StorageError(
                f"combining the datums' outputs failed: {exc} {detail.decode(errors='replace')}"
            ) from exc
        return combined


def datum_label(result: DatumResult) -> str:
    """A datum as messages name it: ``input:/path`` for each of its inputs."""
    return ",".join(f"{name}:/{path}" for name, path in sorted(result.paths.items()))


def _children(folder: Path) -> list[Path]:
    """The entries of a folder pfs made, links left out (never followed)."""
    return sorted(p for p in folder.iterdir() if not p.is_symlink())


def _files(root: Path) -> list[str]:
    """Every path under a datum's output that is not a folder (files, links, FIFOs...),
    relative to it. A container wrote the tree: no link is followed, not even to ask
    what it points at (a link to a host folder is a path like any other)."""
    if not root.is_dir() or root.is_symlink():
        return []
    paths = []
    todo = [""]
    while todo:
        rel = todo.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    todo.append(path)
                else:
                    paths.append(path)
    return paths
