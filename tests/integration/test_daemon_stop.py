"""A SIGTERM stops a real daemon promptly, whichever of its threads the kernel hands it
to: systemd and Docker SIGKILL a daemon that takes too long (``PfsNode.stop`` does after
30 s), which is a crash."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

import pytest
import requests_unixsocket

from tests.pfs_node import CALL_TIMEOUT, PfsNode

STOP_BOUND = 10.0
"""Seconds a stop may take here: generous, and well under the 30 s before SIGKILL."""


def tgkill(pid: int, thread: int, signum: int) -> None:
    """Send ``signum`` to one thread of process ``pid``, as the kernel may deliver a
    signal sent to the whole process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, thread, signum) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def assert_stops(node: PfsNode) -> None:
    try:
        code = node.wait_exit(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon did not stop within {STOP_BOUND} s:\n{node.log()[-3000:]}")
    assert code == 0, node.log()
    assert "signal 15: stopping" in node.log()


def test_a_sigterm_delivered_to_another_thread_stops_the_daemon(node: PfsNode) -> None:
    """Python runs the handler on the main thread only; the signal reaching a worker
    thread left it waiting, unwoken, until the SIGKILL."""
    node.start()
    assert node.process is not None
    pid = node.process.pid
    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert others, "the daemon runs no thread but its main one"
    tgkill(pid, others[-1], signal.SIGTERM)
    assert_stops(node)


def test_a_sigterm_right_after_a_commit_stops_the_daemon(node: PfsNode) -> None:
    """The size meter measures the commit (``btrfs send``) as the signal comes."""
    node.start()
    node.cli("repo", "create", "r")
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F")
    for name in ("a.txt", "b.txt"):  # the second has a parent to be measured against
        reply = requests_unixsocket.Session().put(
            url + "/v1/repos/r/branches/master/files",
            params={"path": name},
            data=b"data",
            timeout=CALL_TIMEOUT,
        )
        assert reply.status_code == 200, reply.text
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    assert_stops(node)
