"""Thirty SIGKILLs during real ``docker run`` and ``pfs put`` traffic: every
acknowledged write ends in a commit and no mount record is left, with no manual step."""

from __future__ import annotations

import pytest

from tests.crash_storm import DOCKER_REPO, PUT_REPO, CrashStorm
from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

KILLS = 30


def test_a_crash_storm_loses_no_acknowledged_write_and_leaves_no_record(
    pfs: PfsNode, docker_engine: DockerEngine, image: str
) -> None:
    storm = CrashStorm(pfs, docker_engine, image, kills=KILLS, seed=11)
    result = storm.run()
    print(
        f"attempts {result.attempts}, acknowledged "
        f"{ {repo: len(w) for repo, w in result.acknowledged.items()} }, restarts max "
        f"{max(result.restarts):.2f} s, settled in {result.settle_seconds:.1f} s, "
        f"refusals {result.refusals}"
    )
    assert result.kills == KILLS
    assert result.stuck == [], f"stuck records: {result.stuck}"
    assert result.lost == {}, f"acknowledged but not committed: {result.lost}"
    # the storm really hit traffic of both kinds, and some of it got through
    assert len(result.acknowledged.get(DOCKER_REPO, {})) >= 5, result.attempts
    assert len(result.acknowledged.get(PUT_REPO, {})) >= 5, result.attempts
    assert result.plugin_errors == []
    assert "Traceback" not in pfs.log()
