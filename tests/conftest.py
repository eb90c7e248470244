"""Shared fixtures: a real btrfs pool (a loop-mounted image made by the product's own
code), a SQLite store on it, and the services over them; and daemon logs attached to
the report of a failing test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from pfs_volume.btrfs import BtrfsPool, prepare_pool
from pfs_volume.meta import SqliteStore
from pfs_volume.pipelines.uses import PipelineUses
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService

settings.register_profile("pfs", deadline=None)
settings.load_profile("pfs")
"""No per-example time limit: the suite runs 4 workers on 2 cores beside btrfs, etcd and
Docker, and an example that waits 400 ms for a core is not a failure (speed lives in
``bench/``)."""


WORKERS = 4
"""pytest-xdist workers for a run (``-n auto`` in setup.cfg): most tests wait on daemons,
btrfs, Docker and etcd rather than compute, so 4 workers on a 2-core machine took the
suite from about 600 s to 270-290 s, with other work loading the machine (3 workers:
about 440 s)."""

POOL_SIZE = 512 * 1024**2
LOG_TAIL = 20_000
LOGS_KEY = pytest.StashKey[list[tuple[str, Path]]]()
"""Log files to attach to the report of a failing test: (label, path)."""
FAILED_KEY = pytest.StashKey[bool]()
"""Set when a phase of the test (set-up, call or teardown so far) failed."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: ``WORKERS``, or none (in process) when only single tests are named
    (``path::test``), or ``PYTEST_XDIST_AUTO_NUM_WORKERS`` when set."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    named = [arg for arg in config.args if not arg.startswith("-")]
    if named and all("::" in arg for arg in named):
        return 0
    return WORKERS


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker under ``--dist loadgroup``, refuse to run when xdist did not tag
    the grouped tests (their node id ends in ``@group``): a pytest that xdist does not
    follow (pytest 9.2 with xdist 3.8) drops every ``xdist_group`` without a word, and
    timing-bound tests would then run side by side."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist_group was not applied by this pytest "
                f"({pytest.__version__}) and pytest-xdist; see setup.cfg's test extras"
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the logs a test registered (``attach_log``) to its failure."""
    report = yield
    if report.failed:
        item.stash[FAILED_KEY] = True
        for label, path in item.stash.get(LOGS_KEY, []):
            text = path.read_text(errors="replace") if path.exists() else "(no log file)"
            report.sections.append((f"{label} (tail)", text[-LOG_TAIL:]))
    return report


@pytest.fixture(autouse=True)
def free_disk_after_passing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Remove a passing test's tmp_path once every other fixture has been torn down.

    Pool images, etcd data and engine roots add up to about 25 GB a run; pytest would
    keep them until the run ends (and three runs' worth after that), which filled a CI
    disk mid-run. A failing test's folder is kept for its post-mortem, and so is any
    folder something is still mounted under: removing files below a leaked mount would
    destroy what it holds rather than free the disk.
    """
    yield
    if request.node.stash.get(FAILED_KEY, False) or _mounted_below(tmp_path):
        return
    shutil.rmtree(tmp_path, ignore_errors=True)


def _mounted_below(path: Path) -> bool:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return any(line.split()[4].startswith(prefix) for line in handle)


@pytest.fixture
def attach_log(request: pytest.FixtureRequest) -> Callable[[str, Path], None]:
    """Register a log file to be shown when the test fails."""

    def attach(label: str, path: Path) -> None:
        request.node.stash.setdefault(LOGS_KEY, []).append((label, path))

    return attach


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[BtrfsPool]:
    """A fresh btrfs pool in a sparse image under tmp_path, unmounted afterwards."""
    root, image = prepare_pool(tmp_path / "state", POOL_SIZE)
    assert image is not None, "tmp_path is on btrfs: these tests want a fresh image"
    try:
        yield BtrfsPool(root)
    finally:
        image.unmount()


@pytest.fixture
def store(pool: BtrfsPool) -> Iterator[SqliteStore]:
    db = SqliteStore(pool.root / "meta.db")
    yield db
    db.close()


@pytest.fixture
def repos(store: SqliteStore, pool: BtrfsPool) -> RepoService:
    """Wired as the daemon wires it: pipelines' output branches belong to them."""
    return RepoService(store, pool, uses=PipelineUses(store))


@pytest.fixture
def volumes(repos: RepoService, store: SqliteStore, pool: BtrfsPool) -> VolumeService:
    """Wired as the daemon wires it: List's answer kept while nothing changes."""
    return VolumeService(repos, store, prefix="pfs", pool_changes=pool.changed_paths)
