"""Attack: many ``pfs wait`` / ``pfs job wait`` requests at once on a real daemon.

A wait holds one of the API socket's worker threads (``transport.THREADS``) for up to
its timeout. The waits a daemon serves at once (``MAX_WAITERS``) were 16 against 8
threads: 8 waits on a commit whose pipeline cannot run yet took every thread, and the
API (every other ``pfs`` verb) answered nothing for as long as they waited (30 s, and
again for as long as the CLI asks anew). Waits and follows together must leave threads
for everything else.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import requests_unixsocket

from pfs_volume.cli.client import ApiClient
from pfs_volume.pipelines.joblogs import MAX_FOLLOWERS
from pfs_volume.pipelines.waits import MAX_WAITERS
from pfs_volume.transport import THREADS
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

pytestmark = pytest.mark.xdist_group("timing-daemon")

WAIT = 12.0
"""Seconds each hostile wait asks to block."""
ANSWER_BOUND = 3.0
"""Seconds the API may take to answer a health check while the waits block."""


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PfsNode]:
    node = PfsNode(tmp_path_factory.mktemp("waits") / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    node.start()
    try:
        yield node
    finally:
        node.cleanup()


def test_waits_and_follows_leave_api_threads_free() -> None:
    assert MAX_WAITERS + MAX_FOLLOWERS < THREADS


def test_many_waits_at_once_do_not_starve_the_api(daemon: PfsNode) -> None:
    client = ApiClient(str(daemon.api_socket))
    for repo in ("a", "b"):
        client.request("POST", "/v1/repos", json={"name": repo})
    client.stream(
        "PUT", "/v1/repos/a/branches/master/files", data=io.BytesIO(b"x"), path="f"
    ).close()
    spec = {
        "name": "p",
        "input": {"cross": [{"repo": "a", "glob": "/*"}, {"repo": "b", "glob": "/*"}]},
        "transform": {"image": "busybox", "cmd": ["true"]},
    }
    client.request("POST", "/v1/pipelines", json=spec)  # b has no commit: p waits
    url = "http+unix://" + str(daemon.api_socket).replace("/", "%2F")
    answers: list[float] = []

    def wait() -> None:
        began = time.monotonic()
        with (
            requests_unixsocket.Session() as session,
            contextlib.suppress(requests.RequestException),
        ):
            session.get(
                url + "/v1/repos/a/commits/master/wait",
                params={"timeout": str(WAIT)},
                timeout=WAIT + 10,
            )
        answers.append(time.monotonic() - began)

    waiters = [threading.Thread(target=wait, daemon=True) for _ in range(THREADS)]
    for thread in waiters:
        thread.start()
    time.sleep(1.5)  # every wait has reached a worker thread
    began = time.monotonic()
    with requests_unixsocket.Session() as session:
        health = session.get(url + "/v1/health", timeout=WAIT + 10)
    took = time.monotonic() - began
    for thread in waiters:
        thread.join(timeout=WAIT + 15)
    assert health.status_code == 200
    assert took < ANSWER_BOUND, f"the API answered after {took:.1f} s while {THREADS} waits blocked"
    assert sum(1 for t in answers if t > WAIT - 2) <= MAX_WAITERS, "more waits than allowed blocked"


def test_the_cli_does_not_spin_when_the_daemon_answers_a_wait_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Past ``MAX_WAITERS`` the daemon answers a wait at once, not done: the CLI asked
    again at once, in a tight loop on the API socket for the whole wait."""
    from pfs_volume.cli.waiting import wait_until as _wait_until

    asked: list[float] = []

    def ask(slice_: float) -> dict[str, object]:
        asked.append(slice_)
        return {"done": False}

    began = time.monotonic()
    with pytest.raises(SystemExit):
        _wait_until(ask, lambda r: bool(r["done"]), 2.5, "the job")
    assert time.monotonic() - began < 5
    assert len(asked) <= 6, f"{len(asked)} requests in 2.5 s"
