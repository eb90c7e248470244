"""``GET /v1/repos/R/log`` over a history with merges (a real btrfs pool): the walk over
the log index answers exactly as the walk it replaced (one record read per parent)."""

from __future__ import annotations

from pfs_volume.names import parse_ref
from pfs_volume.volumes import VolumeService
from tests.contract.test_commit_log import reference_log
from tests.protocol.conftest import Transport
from tests.protocol.test_api_merge import edit, forked, merge


def test_log_with_merges_answers_as_the_reference_walk(
    api_http: Transport, volumes: VolumeService
) -> None:
    forked(volumes)
    edit(volumes, "dev", {"d": "1"})
    edit(volumes, "master", {"m": "2"})
    assert merge(api_http, "dev", "master")[1]["outcome"] == "merged"
    edit(volumes, "dev", {"d": "2"})
    edit(volumes, "master", {"m": "3"})
    assert merge(api_http, "dev", "master")[1]["outcome"] == "merged"
    edit(volumes, "master", {"m": "4"})
    head = volumes.repos.get_branch("r", "master").head or ""
    for limit in ("1", "3", "5", "50"):
        for first_parent in ("false", "true"):
            status, body, _ = api_http.request(
                "GET", "/v1/repos/r/log", params={"limit": limit, "first_parent": first_parent}
            )
            assert status == 200, body
            want = reference_log(volumes.store, "r", head, int(limit), first_parent == "true")
            assert [c["id"] for c in body["commits"]] == want, (limit, first_parent)
    merged = volumes.repos.log("r", parse_ref("master"), None)
    assert any(len(c.parents) == 2 for c in merged)
