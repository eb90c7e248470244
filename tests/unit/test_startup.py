"""The pieces of a fast start: the start-up state, the backoff, the driver that answers
"starting" until the volume service is attached, the API served meanwhile, and the
switch of a socket's app while connections stay open."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests_unixsocket
from flask import Flask

from pfs_volume.api.starting import create_starting_app
from pfs_volume.daemon_cluster import retrying_etcd
from pfs_volume.errors import Conflict, Starting, Unavailable
from pfs_volume.startup import Backoff, PendingDriver, StartupState
from pfs_volume.transport import UnixSocketServer
from plugin import create_plugin_app


class CountingVolumes:
    """A volume service that counts the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def list(self) -> tuple[Any, ...]:
        self.calls.append("list")
        return ()

    def create(self, name: str, options: dict[str, str]) -> None:
        self.calls.append(f"create {name}")


def test_the_backoff_doubles_up_to_its_longest_wait() -> None:
    backoff = Backoff(first=0.5, longest=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_state_says_what_start_up_does() -> None:
    state = StartupState()
    assert state.message() == "pfs is starting"
    state.step("recovering")
    assert state.message() == "pfs is starting: recovering"
    state.waiting("pfs cannot reach etcd at X: retrying in 1 s; refused")
    assert state.message() == "pfs cannot reach etcd at X: retrying in 1 s; refused"
    assert not state.is_ready()
    state.ready()
    assert state.is_ready()
    assert state.seconds is not None and state.seconds >= 0


def test_the_driver_refuses_until_the_service_is_attached_then_hands_calls_on() -> None:
    state = StartupState()
    state.step("preparing the pool")
    driver = PendingDriver(state, wait=0.01)
    volumes = CountingVolumes()
    with pytest.raises(Starting, match=r"^pfs is starting: preparing the pool$"):
        driver.list()
    with pytest.raises(Starting, match=r"^pfs is starting: preparing the pool$"):
        driver.create("a", {})  # after its wait
    assert volumes.calls == []
    driver.attach(volumes)  # type: ignore[arg-type]
    assert driver.list() == ()
    driver.create("a", {})
    assert volumes.calls == ["list", "create a"]


def test_the_plugin_answers_the_handshake_and_a_clear_err_while_starting() -> None:
    state = StartupState()
    state.step("recovering")
    client = create_plugin_app(PendingDriver(state)).test_client()
    assert client.post("/Plugin.Activate").get_json(force=True) == {"Implements": ["VolumeDriver"]}
    assert client.post("/VolumeDriver.Capabilities").status_code == 200
    listed = client.post("/VolumeDriver.List")
    assert listed.status_code == 500
    assert listed.get_json(force=True) == {"Err": "pfs is starting: recovering"}


def test_the_starting_api_answers_503_on_every_route() -> None:
    client = create_starting_app(lambda: "pfs is starting: x").test_client()
    health = client.get("/v1/health")
    assert health.status_code == 503
    assert health.get_json()["error"] == {"code": "starting", "message": "pfs is starting: x"}
    assert health.get_json()["version"]
    for method, path in [("GET", "/v1/repos"), ("PUT", "/v1/repos/r/branches/b/files")]:
        answer = client.open(path, method=method, data=b"x" * 100_000)
        assert answer.status_code == 503
        assert answer.get_json() == {"error": {"code": "starting", "message": "pfs is starting: x"}}


def test_a_socket_serves_the_new_app_on_a_connection_opened_before(tmp_path: Path) -> None:
    first, second = Flask("first"), Flask("second")
    first.add_url_rule("/v1/health", "h", lambda: ({"app": "first"}, 503))
    second.add_url_rule("/v1/health", "h", lambda: {"app": "second"})
    server = UnixSocketServer(first, tmp_path / "api.sock", "api")
    server.start()
    session = requests_unixsocket.Session()  # keeps its connection open between calls
    url = "http+unix://" + str(server.path).replace("/", "%2F") + "/v1/health"
    try:
        assert session.get(url, timeout=30).json() == {"app": "first"}
        server.replace_app(second)
        assert session.get(url, timeout=30).json() == {"app": "second"}
    finally:
        session.close()
        server.stop()


class CountingWaits(threading.Event):
    """An event whose waits are counted, not slept; set after ``stop_after`` waits."""

    def __init__(self, stop_after: int = 1000) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if len(self.waits) >= self._stop_after:
            self.set()
        return self.is_set()


def test_etcd_is_retried_with_growing_waits_until_it_answers() -> None:
    tries: list[bool] = []
    closed: list[int] = []

    def open_once(retrying: bool) -> str:
        tries.append(retrying)
        if len(tries) < 3:
            raise Unavailable(f"refused #{len(tries)}")
        return "opened"

    state, stopping = StartupState(), CountingWaits()
    opened = retrying_etcd(
        open_once, lambda: closed.append(1), state, stopping, ["http://e1:2379", "http://e2:2379"]
    )
    assert opened == "opened"
    assert tries == [False, True, True]
    assert len(closed) == 2, "what each failed try made is dropped"
    assert stopping.waits == [0.5, 1.0]
    assert state.message() == (
        "pfs cannot reach etcd at http://e1:2379, http://e2:2379: retrying in 1 s; refused #2"
    )


def test_a_stop_while_waiting_for_etcd_ends_the_retries() -> None:
    def never(retrying: bool) -> str:
        raise Unavailable("refused")

    stopping = CountingWaits(stop_after=2)
    assert retrying_etcd(never, lambda: None, StartupState(), stopping, ["http://e"]) is None
    assert len(stopping.waits) == 2


def test_any_other_failure_is_not_retried() -> None:
    def conflict(retrying: bool) -> str:
        raise Conflict("node id 'a' is registered already by a live node")

    stopping = CountingWaits()
    with pytest.raises(Conflict):
        retrying_etcd(conflict, lambda: None, StartupState(), stopping, ["http://e"])
    assert stopping.waits == []


def test_the_sockets_scope_is_the_volume_services() -> None:
    from pfs_volume.daemon_sockets import SCOPE
    from pfs_volume.volumes import SCOPE as SERVICE_SCOPE

    assert SCOPE == SERVICE_SCOPE


def test_the_sockets_are_served_with_little_imported() -> None:
    """What ``pfs serve`` imports before both sockets answer: no service, no store."""
    import subprocess
    import sys

    probe = (
        "import sys, pfs_volume.daemon_sockets; "
        "print(','.join(m for m in sys.modules if m.startswith(('pfs_volume', 'docker'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.strip().split(","))
    heavy = {
        "pfs_volume.volumes",
        "pfs_volume.repos",
        "pfs_volume.meta",
        "pfs_volume.btrfs",
        "pfs_volume.pipelines",
        "pfs_volume.api.app",
        "docker",
    }
    assert not loaded & heavy, loaded & heavy


def test_a_call_that_changes_something_waits_for_start_up_to_end() -> None:
    """As Docker's retries did while the socket was not there yet: an Unmount of a
    restart is still served, and still commits."""
    driver, volumes = PendingDriver(StartupState(), wait=60.0), CountingVolumes()
    answered: list[str] = []
    caller = threading.Thread(target=lambda: answered.append(str(driver.create("a", {}))))
    caller.start()
    assert volumes.calls == [] and answered == []
    driver.attach(volumes)  # type: ignore[arg-type]
    caller.join(timeout=60)
    assert answered == ["None"]
    assert volumes.calls == ["create a"]


def waiting_call(driver: PendingDriver) -> tuple[threading.Thread, list[str]]:
    """A Create that waits for start-up on a thread of its own; what it ended with."""
    ended: list[str] = []

    def create() -> None:
        try:
            driver.create("a", {})
            ended.append("created")
        except Starting as exc:
            ended.append(str(exc))

    caller = threading.Thread(target=create)
    caller.start()
    return caller, ended


@pytest.mark.parametrize(
    ("end", "told"),
    [
        (
            lambda state: state.fail(Conflict("pool busy")),
            "pfs failed to start: pool busy",
        ),
        (lambda state: state.stopping(), "pfs is stopping (pfs is starting: recovering)"),
    ],
)
def test_a_failed_or_stopped_start_up_answers_its_waiting_calls_at_once(
    end: Any, told: str
) -> None:
    """Not after the wait, nor by a connection closed under them as the sockets stop:
    Docker shows the reason."""
    state = StartupState()
    state.step("recovering")
    driver = PendingDriver(state, wait=3600.0)
    caller, ended = waiting_call(driver)
    end(state)
    caller.join(timeout=60)
    assert not caller.is_alive()
    assert ended == [told]
    with pytest.raises(Starting, match=re.escape(told)):  # and later calls too, unwaited
        driver.mount("a", "m1")


def test_only_so_many_calls_wait_for_start_up_the_next_is_refused_at_once() -> None:
    """Each waiting call holds a plugin-socket thread: they must leave some free."""
    state = StartupState()
    state.step("recovering")
    driver = PendingDriver(state, wait=3600.0, waiters=2)
    callers = [waiting_call(driver) for _ in range(2)]
    deadline = time.monotonic() + 60
    while driver._waiters._value:  # type: ignore[attr-defined]  # both wait
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(Starting, match=r"^pfs is starting: recovering \(2 calls wait"):
        driver.create("b", {})
    volumes = CountingVolumes()
    driver.attach(volumes)  # type: ignore[arg-type]
    for caller, ended in callers:
        caller.join(timeout=60)
        assert ended == ["created"]
    assert volumes.calls == ["create a", "create a"]


def test_the_plugin_socket_has_threads_for_waiting_calls_only_while_starting(
    tmp_path: Path,
) -> None:
    from pfs_volume.config import Settings
    from pfs_volume.daemon_sockets import Sockets
    from pfs_volume.startup import READY_WAITERS
    from pfs_volume.transport import THREADS

    settings = Settings(
        state_dir=tmp_path / "state",
        api_socket=tmp_path / "api.sock",
        plugin_dir=tmp_path / "plugins",
        driver_name="pfsthreads",
    )
    sockets = Sockets(settings).open()
    try:
        assert sockets.plugin is not None
        dispatcher = sockets.plugin._server.task_dispatcher
        assert len(dispatcher.threads) == THREADS + READY_WAITERS
        sockets.serve_ready(CountingVolumes(), Flask("ready"))  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while len(dispatcher.threads) != THREADS:
            assert time.monotonic() < deadline, len(dispatcher.threads)
            time.sleep(0.01)
    finally:
        sockets.stop_serving()
        sockets.unlock()
