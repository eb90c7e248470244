"""A container swaps a folder of its branch's working copy for a symlink to a host folder
and back, as fast as it can, while the host-side file operations (put, rm, ls, cat, get,
revert, merge, commit) run against that branch on a real daemon.

The host folder holds a canary file and a FIFO. Whatever the timing, the daemon must
never write, chmod, chown, list into or open anything there (a thread blocked opening
the FIFO for writing would return if the daemon opened it for reading), and every
answer must be a 2xx or a clear 4xx: never a 5xx, never a hang.

Three shapes: the branch mounted through the plugin (writes are refused while mounted);
the mount released while its container goes on writing (``pfs mount release`` on a
container that still runs: the daemon then believes nobody writes there); and merges
and reverts that create the folder the container swaps out right after it is made.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_unixsocket

from tests.pfs_node import PfsNode

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT = 15.0
SWAP_SECONDS = 2.0
MAX_SWAPS = 20_000
MIN_RUNS = 6
"""Calls a test makes while the container swaps, at the least (each asserts more than 5)."""
HAMMER_SECONDS = 30.0
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two names (renameat2 RENAME_EXCHANGE); False if one is missing."""
    done = _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if done == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOENT, errno.ENOTDIR):
        return False
    raise OSError(err, os.strerror(err), str(a))


class Host:
    """A host folder outside the pool: a canary file and a FIFO nobody may open."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        os.chmod(root, 0o751)  # no mode a merge would give a folder: a chmod shows
        (root / "canary").write_bytes(b"canary: the daemon must never touch this\n")
        os.mkfifo(root / "fifo", 0o644)
        self.before = self.state()
        self.opened = threading.Event()
        self._done = threading.Event()
        self._watch = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._watch.start()

    def _wait_for_reader(self) -> None:
        # open(O_WRONLY) on a FIFO returns only once someone opens it for reading.
        with open(self.root / "fifo", "wb"):
            if not self._done.is_set():
                self.opened.set()

    def state(self) -> dict[str, Any]:
        """Everything about the folder and its entries a daemon could change (not atime)."""
        found: dict[str, Any] = {}
        for name in [".", *sorted(os.listdir(self.root))]:
            info = os.lstat(self.root / name)
            found[name] = (
                info.st_mode,
                info.st_uid,
                info.st_gid,
                info.st_size,
                info.st_ino,
                info.st_mtime_ns,
                info.st_ctime_ns,
                sorted(os.listxattr(self.root / name, follow_symlinks=False)),
            )
        found["canary bytes"] = (self.root / "canary").read_bytes()
        return found

    def check(self) -> None:
        assert not self.opened.is_set(), "the daemon opened the host's FIFO"
        assert self.state() == self.before, "the host folder changed"

    def close(self) -> None:
        self._done.set()
        reader = os.open(self.root / "fifo", os.O_RDONLY | os.O_NONBLOCK)
        self._watch.join(timeout=5)
        os.close(reader)


class Swapper:
    """The container: swaps ``d`` and ``d.tmp`` (one a folder, one a link to the host)
    in a loop bounded in count and time. ``pauses``: quiet gaps between bursts, so the
    daemon sometimes finds the working copy clean and goes ahead."""

    def __init__(self, work: Path, pauses: bool = False) -> None:
        self.work = work
        self.pauses = pauses
        self.swaps = 0
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Swapper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        assert not self.failure, self.failure

    def another_round(self) -> None:
        """Swap for another ``SWAP_SECONDS`` (the calls were too slow to meet enough)."""
        self._thread.join(timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic() + SWAP_SECONDS
        a, b = self.work / "d", self.work / "d.tmp"
        done = 0
        try:
            while not self.stop.is_set() and done < MAX_SWAPS and time.monotonic() < deadline:
                if exchange(a, b):
                    self.swaps += 1
                    done += 1
                    # Spread the swaps over the whole time, so the calls meet them.
                    ahead = done / MAX_SWAPS * SWAP_SECONDS - (deadline - time.monotonic())
                    if ahead > SWAP_SECONDS - 0.1:
                        time.sleep(0.001)
                if self.pauses and random.random() < 0.02:
                    time.sleep(random.uniform(0.0, 0.02))
        except BaseException as exc:
            self.failure.append(exc)


class Api:
    """The pfs API over its unix socket, every call bounded; counts answers by status."""

    def __init__(self, node: PfsNode) -> None:
        self.base = "http+unix://" + str(node.api_socket).replace("/", "%2F")
        self.session = requests_unixsocket.Session()
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []

    def call(
        self, method: str, url: str, body: Any = None, data: bytes | None = None, **params: Any
    ) -> requests.Response:
        raw = (
            data if data is not None else (json.dumps(body).encode() if body is not None else None)
        )
        reply = self.session.request(
            method, self.base + url, params=params, data=raw, timeout=CALL_TIMEOUT
        )
        if method == "GET" and url.endswith("/tar") and reply.status_code == 200:
            _ = reply.content  # the whole stream, so a failure mid-way shows
        self.statuses[reply.status_code] = self.statuses.get(reply.status_code, 0) + 1
        if reply.status_code >= 500:
            self.errors.append(f"{method} {url} {params} {body}: {reply.status_code} {reply.text}")
        return reply

    def ok(self, method: str, url: str, body: Any = None, **params: Any) -> Any:
        reply = self.call(method, url, body, **params)
        assert reply.status_code < 300, f"{method} {url}: {reply.status_code} {reply.text}"
        return reply.json()

    def head(self, branch: str = "master") -> str:
        branches = self.ok("GET", "/v1/repos/r/branches")["branches"]
        return str(next(b["head"] for b in branches if b["name"] == branch))

    def commit(self) -> None:
        self.call("POST", "/v1/repos/r/branches/master/commit", {"message": "container"})

    def writes(self, commits: dict[str, str]) -> list[Callable[[], object]]:
        """Every host-side operation against master and these commits (``d`` as a folder,
        as a link, ...)."""
        branch = "/v1/repos/r/branches/master"
        ops: list[Callable[[], object]] = [
            lambda: self.call("PUT", f"{branch}/files", data=b"x", path="d/x"),
            lambda: self.call("PUT", f"{branch}/files", data=b"y", path="d/new/y"),
            lambda: self.call("DELETE", f"{branch}/files", path="d/x"),
            lambda: self.call("DELETE", f"{branch}/files", path="d/f"),
            lambda: self.call("DELETE", f"{branch}/files", path="d", recursive="true"),
            lambda: self.call("POST", f"{branch}/merge", {"from": "dir"}),
            lambda: self.call("POST", f"{branch}/merge", {"from": "link"}),
        ]
        for commit in commits.values():
            ops.append(lambda c=commit: self.call("POST", f"{branch}/revert", {"commit": c}))
        return ops

    def reads(self, commits: dict[str, str]) -> list[Callable[[], object]]:
        ops: list[Callable[[], object]] = []
        for ref in ["master", *commits.values()]:
            at = f"/v1/repos/r/commits/{ref}"
            ops += [
                lambda at=at: self.call("GET", f"{at}/files", path="d"),
                lambda at=at: self.call("GET", f"{at}/files", path="d/f"),
                lambda at=at: self.call("GET", f"{at}/content", path="d/f"),
                lambda at=at: self.call("GET", f"{at}/content", path="d"),
                lambda at=at: self.call("GET", f"{at}/tar", path="d"),
                lambda at=at: self.call("GET", f"{at}/tar"),
            ]
        return ops


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    made = Host(tmp_path / "host")
    try:
        yield made
        made.check()
    finally:
        made.close()


@pytest.fixture
def api(node: PfsNode) -> Api:
    return Api(node)


def mount(node: PfsNode, name: str, mount_id: str) -> Path:
    assert node.plugin("VolumeDriver.Create", {"Name": name}).get("Err", "") == ""
    reply = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
    assert reply.get("Err", "") == "", reply
    return Path(reply["Mountpoint"])


def unmount(node: PfsNode, name: str, mount_id: str) -> None:
    reply = node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
    assert reply.get("Err", "") == "", reply


def make_folder(work: Path) -> None:
    (work / "d").mkdir()
    (work / "d" / "f").write_bytes(b"in the folder")


def history(node: PfsNode, api: Api, host: Host) -> dict[str, str]:
    """master: base (``d.tmp`` a link to the host) -> diverged -> with_dir (``d`` a folder) ->
    with_link (``d`` a link to the host) -> without (no ``d``); branches ``dir`` and
    ``link`` from base add ``d`` as a folder and as a link. Master ends at with_dir."""
    commits: dict[str, str] = {}
    steps: list[tuple[str, str, Callable[[Path], object]]] = [
        ("r", "base", lambda w: (w / "d.tmp").symlink_to(host.root)),
        ("r/dir", "", make_folder),
        ("r/link", "", lambda w: (w / "d").symlink_to(host.root)),
        ("r", "diverged", lambda w: (w / "m").write_bytes(b"master only")),
        ("r", "with_dir", make_folder),
        ("r", "with_link", lambda w: link_instead(w / "d", host.root)),
        ("r", "without", lambda w: (w / "d").unlink()),
    ]
    for n, (name, label, change) in enumerate(steps):
        change(mount(node, name, f"setup{n}"))
        unmount(node, name, f"setup{n}")
        if label:
            commits[label] = api.head()
    api.ok("POST", "/v1/repos/r/branches/master/reset", {"ref": commits["with_dir"]})
    return commits


def link_instead(path: Path, target: Path) -> None:
    """Replace the folder ``path`` (holding files only) with a link to ``target``."""
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    path.symlink_to(target)


def hammer(ops: list[Callable[[], object]], swapper: Swapper, before: Callable[[], None]) -> int:
    """Run the operations in a random order until the container stops, and for more
    rounds of swaps while fewer than ``MIN_RUNS`` ran (a loaded machine makes each call
    slow), at most ``HAMMER_SECONDS``; how many ran."""
    runs = 0
    give_up = time.monotonic() + HAMMER_SECONDS
    while not swapper.stop.is_set():
        if not swapper.running:
            if runs >= MIN_RUNS or time.monotonic() > give_up:
                break
            swapper.another_round()
        op = random.choice(ops)
        before()
        op()
        runs += 1
    return runs


def test_a_mounted_branch_whose_folder_turns_into_a_link(
    node: PfsNode, api: Api, host: Host
) -> None:
    commits = history(node, api, host)
    work = mount(node, "r", "c1")
    make_folder_if_missing(work)
    with Swapper(work) as container:
        runs = hammer(api.writes(commits) + api.reads(commits), container, api.commit)
    unmount(node, "r", "c1")
    assert not api.errors, api.errors
    assert container.swaps > 100 and runs > 5, (container.swaps, runs)


def make_folder_if_missing(work: Path) -> None:
    if not os.path.lexists(work / "d"):
        make_folder(work)


def test_a_released_mount_whose_container_goes_on_swapping(
    node: PfsNode, api: Api, host: Host
) -> None:
    commits = history(node, api, host)
    work = mount(node, "r", "c1")
    make_folder_if_missing(work)
    api.ok("DELETE", "/v1/mounts/c1")

    def clean_and_reset() -> None:
        api.commit()
        if random.random() < 0.3:
            api.call("POST", "/v1/repos/r/branches/master/reset", {"ref": commits["with_dir"]})
            api.commit()

    with Swapper(work, pauses=True) as container:
        runs = hammer(api.writes(commits) + api.reads(commits), container, clean_and_reset)
    assert not api.errors, api.errors
    assert container.swaps > 100 and runs > 5, (container.swaps, runs)


@pytest.mark.parametrize("verb", ["merge", "revert"])
def test_a_folder_swapped_for_a_link_as_soon_as_it_is_made(
    node: PfsNode, api: Api, host: Host, verb: str
) -> None:
    commits = history(node, api, host)
    # Both make ``d`` a folder: the merge from diverged (no d), the revert of with_link
    # (d a link) from with_link.
    start = commits["with_link"] if verb == "revert" else commits["diverged"]
    work = node.pool_root / "repos" / "r" / "branches" / "master"
    api.ok("POST", "/v1/repos/r/branches/master/reset", {"ref": start})
    branch = "/v1/repos/r/branches/master"

    def again() -> None:
        api.commit()
        api.call("POST", f"{branch}/reset", {"ref": start})

    def make_d() -> object:
        if verb == "merge":
            return api.call("POST", f"{branch}/merge", {"from": "dir"})
        return api.call("POST", f"{branch}/revert", {"commit": commits["with_link"]})

    with Swapper(work) as container:
        runs = hammer([make_d], container, again)
    assert not api.errors, api.errors
    assert runs > 5, runs
