"""``repo inspect``'s size on a real btrfs pool: what the kept commits wrote, kept up to
date as commits land (measured off the commit path), by gc, and by deleting the repo."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from pfs_volume.meta import RepoSize
from pfs_volume.repos import SizeMeter
from pfs_volume.transfer import export_repo, import_repo
from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.conftest import Transport
from tests.protocol.test_api_gc import send

KIB = 1024


@pytest.fixture(autouse=True)
def meter(volumes: VolumeService) -> Iterator[SizeMeter]:
    """The daemon starts the size meter and closes it before the pool goes."""
    sizes = volumes.repos._parts.sizes.start()
    yield sizes
    assert sizes.close(30)


def write(volumes: VolumeService, mount_id: str, files: dict[str, int]) -> str:
    path = volumes.mount("pfs/r", mount_id)
    for name, size in files.items():
        (path / name).write_bytes(os.urandom(size))
    volumes.unmount("pfs/r", mount_id)
    assert volumes.repos._parts.sizes.wait_idle(30), "the commit was not measured in time"
    return volumes.repos.get_branch("r", "master").head or ""


def inspected(http: Transport) -> tuple[int | None, int]:
    status, body = send(http, "GET", "/v1/repos/r")
    assert status == 200, body
    return body["size"], body["size_unmeasured_commits"]


def test_sizes_after_commits_gc_and_deletion(api_http: Transport, volumes: VolumeService) -> None:
    store = volumes.repos.store
    first = write(volumes, "m1", {"a": 128 * KIB})
    assert store.commit_size("r", first) == 128 * KIB, "a root commit: all its files"
    second = write(volumes, "m2", {"b": 64 * KIB})
    assert store.commit_size("r", second) == 64 * KIB, "only what it wrote"
    third = write(volumes, "m3", {"a": 128 * KIB})
    assert store.commit_size("r", third) == 128 * KIB
    assert inspected(api_http) == (320 * KIB, 0)
    status, body = send(api_http, "POST", "/v1/repos/r/gc", {"keep_last": 1})
    assert status == 200 and sorted(body["pruned"]) == sorted([first, second])
    assert inspected(api_http) == (128 * KIB, 0), "pruned commits no longer count"
    status, _ = send(api_http, "DELETE", "/v1/repos/r")
    assert status == 200
    assert store.repo_size("r") is None and store.commit_size("r", third) is None
    fresh = write(volumes, "m4", {"c": 64 * KIB})
    assert inspected(api_http) == (64 * KIB, 0) and store.commit_size("r", fresh) == 64 * KIB


def test_an_import_is_measured(volumes: VolumeService) -> None:
    write(volumes, "m1", {"a": 64 * KIB})
    write(volumes, "m2", {"b": 32 * KIB})
    data = b"".join(export_repo(volumes.repos, "r"))
    import_repo(volumes.repos, io.BytesIO(data), "copy")
    assert volumes.repos._parts.sizes.wait_idle(30)
    assert volumes.repos.store.repo_size("copy") == RepoSize(96 * KIB, 0)


def test_repo_inspect_says_what_the_size_is(api_socket: str) -> None:
    result = invoke(["--api", api_socket, "repo", "inspect", "photos"])
    assert result.exit_code == 0, result.output
    assert "MiB written by its kept commits" in result.output
