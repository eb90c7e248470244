"""A real ``pfs serve`` process with its own pool, for the crash tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PfsNode]:
    """A stopped daemon on a fresh state dir; stopped and cleaned up after the test."""
    pfs = PfsNode(tmp_path / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    try:
        yield pfs
    finally:
        pfs.cleanup()
