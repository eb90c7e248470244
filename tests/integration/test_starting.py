"""A starting daemon: both sockets answer before anything slow, volume calls and the API
say what it is doing until it is ready, a crash at any start-up step leaves a node that
starts again, and a fatal failure behind the sockets still exits non-zero.

Start-up is held at its steps with ``NAME=hold`` failpoints (``pfs_volume.failpoints``):
only the start-up thread waits, so what the sockets answer meanwhile is seen without any
timing. The daemons are real ``pfs serve`` processes on their own pool images.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.btrfs.pool_image import is_mountpoint
from pfs_volume.failpoints import KILLED_EXIT
from tests.pfs_node import PFS, PRIVATE_PLUGIN_DIR, PfsNode

HELD_TIMEOUT = 60.0
STEPS = ("start.pool_ready", "start.store_open")
"""The start-up failpoints, in order: the pool is mounted; the store is open (recovery
comes next)."""
READ_CALLS = [("VolumeDriver.Get", {"Name": "early"}), ("VolumeDriver.List", {})]
"""The calls a starting daemon answers with its Err at once (the others wait for it)."""


def wait_for_log(node: PfsNode, line: str) -> None:
    """Wait until the daemon logged ``line`` (a call reached it and waits)."""
    deadline = time.monotonic() + HELD_TIMEOUT
    while line not in node.log():
        assert time.monotonic() < deadline, f"never logged {line!r}:\n{node.log()}"
        time.sleep(0.05)


def create_in_background(node: PfsNode, name: str) -> tuple[threading.Thread, list[Any]]:
    """A ``VolumeDriver.Create`` of ``name`` sent on a thread of its own (it waits while
    the node starts); the thread and the list its answer is put in."""
    created: list[Any] = []
    creating = threading.Thread(
        target=lambda: created.append(node.plugin("VolumeDriver.Create", {"Name": name}))
    )
    creating.start()
    return creating, created


class HeldStart:
    """A folder of ``NAME=hold`` failpoints: which step start-up waits at, and its
    release."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def env(self, step: str) -> dict[str, str]:
        """The daemon's environment that holds start-up at ``step``."""
        return {"PFS_FAILPOINTS": f"{step}=hold", "PFS_FAILPOINTS_HOLD_DIR": str(self.folder)}

    def wait_held(self, step: str, node: PfsNode) -> None:
        """Wait until start-up reached ``step`` and waits there."""
        deadline = time.monotonic() + HELD_TIMEOUT
        while not (self.folder / f"{step}.held").exists():
            assert node.process is not None and node.process.poll() is None, node.log()
            assert time.monotonic() < deadline, f"start-up never reached {step}:\n{node.log()}"
            time.sleep(0.05)

    def release(self, step: str) -> None:
        """Let start-up go on from ``step``."""
        (self.folder / step).touch()


def exit_code(node: PfsNode, env: dict[str, str] | None = None) -> int:
    """Start ``node``, which should exit by itself during start-up; its exit status."""
    with contextlib.suppress(RuntimeError):  # it exited before its sockets answered
        node.start(env=env, ready=False)
    return node.wait_exit(timeout=HELD_TIMEOUT)


@pytest.fixture
def held(tmp_path: Path) -> HeldStart:
    return HeldStart(tmp_path / "hold")


@pytest.mark.parametrize("step", STEPS)
def test_the_sockets_answer_at_once_and_volume_calls_say_the_node_is_starting(
    node: PfsNode, held: HeldStart, step: str
) -> None:
    node.start(env=held.env(step), ready=False)
    held.wait_held(step, node)

    assert node.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert node.plugin("VolumeDriver.Capabilities") == {"Capabilities": {"Scope": "local"}}
    for call, body in READ_CALLS:
        answer = node.plugin(call, body)
        assert answer == {"Err": "pfs is starting: preparing the pool"}, (call, answer)
    # A Create waits for start-up (as Docker's retries did while no socket was there).
    creating, created = create_in_background(node, "early")
    wait_for_log(node, "Create waits for start-up (pfs is starting: preparing the pool)")
    health = node.api("GET", "/v1/health")
    assert health.status_code == 503
    assert health.json()["error"] == {
        "code": "starting",
        "message": "pfs is starting: preparing the pool",
    }
    assert health.json()["version"]
    refused = node.cli("repo", "list", check=False)
    assert refused.returncode == 1
    assert refused.stderr == "pfs: error: pfs is starting: preparing the pool\n"
    version = health.json()["version"]
    assert node.cli("--version").stdout.splitlines() == [
        f"pfs {version} (CLI)",
        f"daemon {version} at {node.api_socket} (pfs is starting: preparing the pool)",
    ]

    held.release(step)
    creating.join(timeout=HELD_TIMEOUT)
    assert created == [{}]
    node.wait_ready()
    assert [v["Name"] for v in node.plugin("VolumeDriver.List")["Volumes"]] == ["early"]
    assert node.api("GET", "/v1/health").json() == {"ok": True, "version": version}
    assert node.cli("--version").stdout.splitlines() == [
        f"pfs {version} (CLI)",
        f"daemon {version} at {node.api_socket}",
    ]


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_each_start_up_step_leaves_a_node_that_starts_again(
    node: PfsNode, step: str
) -> None:
    node.start()
    assert node.plugin("VolumeDriver.Create", {"Name": "kept"}) == {}
    assert node.plugin("VolumeDriver.Mount", {"Name": "kept", "ID": "m1"})["Mountpoint"]
    Path(node.plugin("VolumeDriver.Path", {"Name": "kept"})["Mountpoint"], "a").write_text("1")
    assert node.plugin("VolumeDriver.Unmount", {"Name": "kept", "ID": "m1"}) == {}
    [commit] = node.cli_json("log", "kept")
    node.stop()

    assert exit_code(node, {"PFS_FAILPOINTS": step}) == KILLED_EXIT

    node.start()
    assert node.cli_json("log", "kept") == [commit]
    assert node.cli("cat", f"kept@{commit['id']}", "a").stdout == "1"


def test_a_failure_behind_the_sockets_exits_non_zero_with_its_reason(tmp_path: Path) -> None:
    # A bad setting found only after the sockets listen: a pool image too small to make.
    node = PfsNode(tmp_path / "state", pool_size="16M", plugin_dir=PRIVATE_PLUGIN_DIR)
    try:
        assert exit_code(node) == 1, node.log()
        assert node.log().splitlines()[-1] == (
            "pfs: error: pool size 16777216 bytes is too small; at least 268435456 bytes "
            "(256M) are needed"
        )
        assert not node.plugin_socket.exists()
        assert not node.api_socket.exists()
    finally:
        node.cleanup()


def test_a_second_daemon_still_fails_at_once_on_a_held_state_dir(
    node: PfsNode, held: HeldStart
) -> None:
    node.start(env=held.env("start.pool_ready"), ready=False)
    held.wait_held("start.pool_ready", node)
    second = subprocess.run(
        [PFS, "serve", "--state-dir", str(node.state_dir), "--driver-name", "pfsother"],
        capture_output=True,
        text=True,
        timeout=HELD_TIMEOUT,
        check=False,
    )
    assert second.returncode == 1
    assert "another pfs daemon" in second.stderr
    held.release("start.pool_ready")
    node.wait_ready()


def test_systemd_is_told_ready_once_the_sockets_listen_and_each_step_after(
    node: PfsNode, held: HeldStart, tmp_path: Path
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(HELD_TIMEOUT)
    try:
        env = {**held.env("start.pool_ready"), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
        node.start(env=env, ready=False)
        held.wait_held("start.pool_ready", node)
        said = [notify.recv(4096).decode() for _ in range(2)]
        assert said[0].splitlines()[0] == "READY=1"  # before the pool is ready
        assert said[1] == "STATUS=pfs is starting: preparing the pool"
        held.release("start.pool_ready")
        node.wait_ready()
        while not (message := notify.recv(4096).decode()).startswith("STATUS=ready"):
            assert message.startswith("STATUS=pfs is starting: "), message
        node.stop()
        assert notify.recv(4096) == b"STOPPING=1"
    finally:
        notify.close()


def test_calls_waiting_for_start_up_leave_threads_for_the_handshake_list_and_get(
    node: PfsNode, held: HeldStart
) -> None:
    """Docker boots many containers at once: their Mounts wait for start-up, each on a
    plugin-socket thread. Activate, List and Get must still be answered (at once, not
    after the waits: Docker gives List and Get a minute), and a Mount beyond what may
    wait is refused at once rather than queued behind the waits."""
    from pfs_volume.startup import READY_WAITERS

    node.start(env=held.env("start.pool_ready"), ready=False)
    held.wait_held("start.pool_ready", node)
    answers: dict[int, Any] = {}

    def mount(i: int) -> None:
        answers[i] = node.plugin("VolumeDriver.Mount", {"Name": f"v{i}", "ID": f"m{i}"})

    waiting = [threading.Thread(target=mount, args=(i,)) for i in range(READY_WAITERS)]
    for caller in waiting:
        caller.start()
    deadline = time.monotonic() + HELD_TIMEOUT
    while node.log().count("Mount waits for start-up") < READY_WAITERS:
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.05)
    assert node.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}
    assert node.plugin("VolumeDriver.Capabilities") == {"Capabilities": {"Scope": "local"}}
    for call, body in READ_CALLS:
        assert node.plugin(call, body) == {"Err": "pfs is starting: preparing the pool"}
    assert node.plugin("VolumeDriver.Mount", {"Name": "late", "ID": "m"}) == {
        "Err": f"pfs is starting: preparing the pool ({READY_WAITERS} calls wait for it already)"
    }
    assert answers == {}, "every answer above came while all the Mounts still waited"

    held.release("start.pool_ready")
    for caller in waiting:
        caller.join(timeout=HELD_TIMEOUT)
    assert sorted(answers) == list(range(READY_WAITERS))
    assert all("Mountpoint" in answer for answer in answers.values()), answers


def test_a_failed_start_up_tells_waiting_calls_why_and_leaves_no_pool_mounted(
    node: PfsNode, held: HeldStart
) -> None:
    node.start(env=held.env("start.pool_ready"), ready=False)
    held.wait_held("start.pool_ready", node)
    answers: list[Any] = []
    unmount = threading.Thread(
        target=lambda: answers.append(
            node.plugin("VolumeDriver.Unmount", {"Name": "kept", "ID": "m1"})
        )
    )
    unmount.start()
    wait_for_log(node, "Unmount waits for start-up")
    (node.pool_root / "meta.db").write_bytes(b"not a database" * 100)  # found next
    held.release("start.pool_ready")

    assert node.wait_exit(timeout=HELD_TIMEOUT) == 1
    unmount.join(timeout=HELD_TIMEOUT)
    reason = f"cannot open the metadata store {node.pool_root}/meta.db: file is not a database"
    assert answers == [{"Err": f"pfs failed to start: {reason}"}]
    assert node.log().splitlines()[-1] == f"pfs: error: {reason}"
    assert not node.plugin_socket.exists() and not node.api_socket.exists()
    assert not is_mountpoint(node.pool_root), "the pool (and its loop device) stayed"


def test_a_sigterm_as_soon_as_the_sockets_answer_stops_cleanly(node: PfsNode) -> None:
    """The sockets answer before the daemon is imported (a second or more): a SIGTERM
    then (systemd's stop, an operator's Ctrl-C) stops it as at any other time, rather
    than killing it with both socket files left and, once start-up began, the pool."""
    node.start(ready=False)
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    assert node.wait_exit(timeout=HELD_TIMEOUT) == 0, node.log()
    assert not node.plugin_socket.exists() and not node.api_socket.exists()
    assert not is_mountpoint(node.pool_root)
    node.start()  # and it starts again
    assert node.plugin("VolumeDriver.Create", {"Name": "after"}) == {}


@pytest.mark.parametrize("framing", ["Content-Length: 10737418240", "Transfer-Encoding: chunked"])
def test_an_upload_while_starting_is_told_so_before_its_body_is_sent(
    node: PfsNode, held: HeldStart, framing: str
) -> None:
    """Not after all of it was spooled to a temp file (10 GiB here), only to be
    refused then: the starting API's routes take no body."""
    node.start(env=held.env("start.pool_ready"), ready=False)
    held.wait_held("start.pool_ready", node)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(HELD_TIMEOUT)
    try:
        client.connect(str(node.api_socket))
        client.sendall(
            f"PUT /v1/repos/r/branches/master/files?path=big HTTP/1.1\r\nHost: pfs\r\n"
            f"{framing}\r\n\r\n".encode()
        )
        first = b"%x\r\n%b\r\n" % (65536, b"x" * 65536) if "chunked" in framing else b"x" * 65536
        client.sendall(first)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            piece = client.recv(65536)  # a timeout here: the daemon waits for the body
            assert piece, answer
            answer += piece
    finally:
        client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), head
    assert json.loads(body) == {
        "error": {"code": "starting", "message": "pfs is starting: preparing the pool"}
    }
    held.release("start.pool_ready")
    node.wait_ready()


def test_a_sigterm_while_the_pool_is_prepared_does_not_wait_for_recovery(
    node: PfsNode, held: HeldStart
) -> None:
    """Start-up notices the stop between its steps: a stop during the pool's set-up
    (mkfs, mount) stops there, not after opening the store and a recovery (minutes on
    a big pool), with systemd's stop timeout running."""
    node.start(env=held.env("start.pool_ready"), ready=False)
    held.wait_held("start.pool_ready", node)
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    wait_for_log(node, "signal 15: stopping")
    held.release("start.pool_ready")
    assert node.wait_exit(timeout=HELD_TIMEOUT) == 0, node.log()
    assert "recovering what a crash left unfinished" not in node.log()
    assert not is_mountpoint(node.pool_root)
