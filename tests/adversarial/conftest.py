"""Fixtures the attack tests share."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode
from tests.protocol.conftest import api_http  # noqa: F401


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PfsNode]:
    """A real daemon on its own pool, with a private plugin folder."""
    pfs = PfsNode(tmp_path / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    try:
        yield pfs.start()
    finally:
        pfs.cleanup()
