"""A commit holding a folder 2,000 levels deep (a container can make one with relative
paths; the whole path is far past PATH_MAX): get (the tar), commit inspect, ls, diff,
revert and merge over it give the right result through the CLI on a real API socket and
a real btrfs pool, in bounded time, never a RecursionError, a 500 or a traceback."""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests_unixsocket

from pfs_volume.safepath import closing, open_root, remove_tree
from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.test_api_names import served

__all__ = ["served"]

DEPTH = 2000
SECONDS = 120.0
"""What each verb may take over the deep chain: a backstop against a walk that is
quadratic in the depth or never ends (minutes here), not a speed target (a quiet machine
takes a few seconds; 39 s was seen at load 13 on 2 cores)."""


def pfs(api: str, *args: str) -> tuple[int, str, str]:
    started = time.monotonic()
    result = invoke(["--api", api, *args])
    took = time.monotonic() - started
    assert took < SECONDS, f"pfs {' '.join(args)[:60]} took {took:.1f}s"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def build_chain(top: Path, depth: int = DEPTH) -> None:
    """``d/d/.../d/bottom`` (``depth`` folders), made one relative name at a time."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
        handle.write("deep")
    os.close(fd)


def read_bottom(top: Path, depth: int = DEPTH) -> str | None:
    """What ``d/.../d/bottom`` holds under ``top`` (None: the chain is not all there)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            try:
                inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = inner
        with open(os.open("bottom", os.O_RDONLY, dir_fd=fd)) as handle:
            return handle.read()
    finally:
        os.close(fd)


@pytest.fixture
def outputs(tmp_path: Path) -> Iterator[Path]:
    """A folder for ``pfs get`` to write into, removed afterwards without recursion
    (pytest's own clean-up of tmp_path recurses per level)."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    yield folder
    with closing(open_root(tmp_path)) as top:
        remove_tree(top, "outputs")


def deep_commit(volumes: VolumeService) -> str:
    """The repo r's root commit: the chain and a file ``top``."""
    path = volumes.mount("pfs/r", "m1")
    build_chain(path)
    (path / "top").write_text("t")
    volumes.unmount("pfs/r", "m1")
    return volumes.repos.get_branch("r", "master").head or ""


def test_get_and_inspect_and_ls_of_a_deep_chain(
    served: str, volumes: VolumeService, outputs: Path
) -> None:
    head = deep_commit(volumes)
    names = []
    with (
        requests_unixsocket.Session() as session,
        session.get(
            f"http+unix://{quote(served, safe='')}/v1/repos/r/commits/master/tar",
            stream=True,
            timeout=SECONDS,
        ) as answer,
        tarfile.open(fileobj=answer.raw, mode="r|") as tar,
    ):
        for member in tar:
            names.append(member.name)
            if member.isfile() and member.name.endswith("/bottom"):
                handle = tar.extractfile(member)
                assert handle is not None and handle.read() == b"deep"
    assert names == [
        "r",
        *("r" + "/d" * n for n in range(1, DEPTH + 1)),
        "r" + "/d" * DEPTH + "/bottom",
        "r/top",
    ]
    out = outputs / "out"
    code, _, err = pfs(served, "get", "r@master", "-o", str(out))
    assert code == 0, err
    assert read_bottom(out / "r") == "deep"
    # Under a destination whose path makes the chain longer than a path can be: a
    # clear refusal, the limit named; from a folder deep in it, the right files.
    far = outputs / ("x" * 200)
    code, _, err = pfs(served, "get", "r@master", "-o", str(far))
    assert code == 1 and err.startswith("pfs: error: r/d/d/d"), err
    assert "is too deep to write here" in err and "this system's limit is 4095" in err
    code, _, err = pfs(served, "get", "r@master", "/".join(["d"] * 1000), "-o", str(far))
    assert code == 0, err
    assert read_bottom(far / "d", DEPTH - 1000) == "deep"
    code, text, err = pfs(served, "commit", "inspect", "r@master")
    assert code == 0, err
    assert head[:12] in text
    code, text, err = pfs(served, "ls", "r@master", "/".join(["d"] * 100))
    assert code == 0 and text.split() and "d" in text.split(), err


def test_diff_revert_and_merge_over_a_deep_chain(served: str, volumes: VolumeService) -> None:
    root = deep_commit(volumes)
    code, _, err = pfs(served, "branch", "create", "r/dev", "--from", "master")
    assert code == 0, err
    path = volumes.mount("pfs/r", "m2")
    (path / "later").write_text("l")
    volumes.unmount("pfs/r", "m2")
    code, text, err = pfs(served, "diff", "r@" + root)
    assert code == 0, err
    assert "top" in text and "bottom" in text
    code, _, err = pfs(served, "revert", "r/master", root)
    assert code == 0, err
    reverted = volumes.repos.branch_path("r", "master")
    assert sorted(os.listdir(reverted)) == ["later"]
    path = volumes.mount("pfs/r/dev", "m3")
    (path / "theirs").write_text("x")
    volumes.unmount("pfs/r/dev", "m3")
    code, _, err = pfs(served, "merge", "r/dev", "--into", "master")
    assert code == 0, err
    merged = volumes.repos.branch_path("r", "master")
    assert sorted(os.listdir(merged)) == ["later", "theirs"]
