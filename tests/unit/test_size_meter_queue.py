"""``SizeMeter.queued``: the commits the meter is about to measure, which ``pfs fsck``
leaves to it; a commit leaves it once measured, failed or dropped at ``close``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from pfs_volume.errors import StorageError
from pfs_volume.meta import CommitRecord
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.sizes import SizeMeter


def commit(n: int, repo: str = "r") -> CommitRecord:
    return CommitRecord(f"{n:032x}", repo, "master", None, datetime.now(UTC), "m", "test")


class Blocking:
    """Stands in for ``SizeMeter.measure``: each call waits for ``go``; the second fails."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.go = threading.Event()
        self.calls = 0

    def __call__(self, record: CommitRecord, cancel: threading.Event | None = None) -> int | None:
        self.calls += 1
        self.started.set()
        assert self.go.wait(10)
        if self.calls == 2:
            raise StorageError("the store went away")
        return 1


@pytest.fixture
def meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SizeMeter, Blocking]:
    sizes = SizeMeter(cast(Any, None), PoolLayout(tmp_path))
    blocking = Blocking()
    monkeypatch.setattr(sizes, "measure", blocking)
    return sizes, blocking


def test_queued_until_measured_or_failed(meter: tuple[SizeMeter, Blocking]) -> None:
    sizes, blocking = meter
    sizes.measure_later(commit(1))
    assert sizes.queued("r") == set(), "a meter not started queues nothing"
    sizes.start()
    sizes.measure_later(commit(1))
    sizes.measure_later(commit(2))
    sizes.measure_later(commit(3, repo="other"))
    assert blocking.started.wait(10)
    assert sizes.queued("r") == {commit(1).id, commit(2).id}
    assert sizes.queued("other") == {commit(3).id}
    blocking.go.set()
    assert sizes.wait_idle(10)
    assert sizes.queued("r") == set() and sizes.queued("other") == set()
    assert blocking.calls == 3
    assert sizes.close(10)


def test_close_drops_what_is_queued(meter: tuple[SizeMeter, Blocking]) -> None:
    sizes, blocking = meter
    sizes.start()
    sizes.measure_later(commit(1))
    sizes.measure_later(commit(2))
    assert blocking.started.wait(10)
    assert sizes.close(timeout=0.1) is False, "the first one is being measured"
    assert sizes.queued("r") == {commit(1).id}
    blocking.go.set()
    assert sizes.wait_idle(10) and sizes.queued("r") == set()
    assert blocking.calls == 1
