"""A crash storm: SIGKILLs of a pfs daemon during real traffic, and what survived.

Traffic, each kind in its own threads, bounded in count and time:

* ``docker run`` writers: containers that mount ``DRIVER/storm@master`` (Docker's real
  Mount and Unmount) and write one file each; a write is acknowledged when
  ``docker run`` exited 0.
* ``pfs put`` writers: one file per put to ``puts@master`` through the API; a write is
  acknowledged when the API answered with its commit.
* plugin readers: Docker's Get, List and Path calls on the plugin socket, as the engine
  makes them; they must never get a 500 once the daemon is up.

A killer SIGKILLs the daemon ``kills`` times at random moments and starts it again,
timing each restart until both sockets answer. Afterwards, with no manual step, the
mount records must settle to none (the reconciler releases what Docker's lost Unmounts
left), and every acknowledged write must be in the head commit of its branch.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
import requests_unixsocket

from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode

DOCKER_REPO = "storm"
PUT_REPO = "puts"
RUN_TIMEOUT = 90.0
CALL_TIMEOUT = 30.0


@dataclass
class StormResult:
    """What a storm did and what survived it."""

    kills: int = 0
    restarts: list[float] = field(default_factory=list)
    """Seconds from each restart to both sockets answering."""
    acknowledged: dict[str, dict[str, str]] = field(default_factory=dict)
    """repo -> file -> content, of every acknowledged write."""
    attempts: dict[str, int] = field(default_factory=dict)
    committed: dict[str, dict[str, str]] = field(default_factory=dict)
    """repo -> file -> content at the branch head after the storm settled."""
    stuck: list[dict[str, Any]] = field(default_factory=list)
    """Mount records left once the storm settled."""
    settle_seconds: float = 0.0
    plugin_errors: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    """An answer other than success, by kind (``put 409: ...``), with its count."""

    @property
    def lost(self) -> dict[str, list[str]]:
        """Acknowledged writes missing from (or different in) their branch's head."""
        missing: dict[str, list[str]] = {}
        for repo, writes in self.acknowledged.items():
            have = self.committed.get(repo, {})
            gone = sorted(name for name, text in writes.items() if have.get(name) != text)
            if gone:
                missing[repo] = gone
        return missing


class CrashStorm:
    """Runs one storm against ``node`` (started) on ``engine`` with ``image``.

    Args:
        kills: how many SIGKILLs.
        docker_writers, put_writers, readers: threads of each kind of traffic.
        pause: (low, high) seconds of traffic between a restart and the next kill.
        seed: for the random pauses.
    """

    def __init__(
        self,
        node: PfsNode,
        engine: DockerEngine,
        image: str,
        kills: int,
        docker_writers: int = 2,
        put_writers: int = 1,
        readers: int = 1,
        pause: tuple[float, float] = (0.2, 0.8),
        seed: int | None = None,
    ) -> None:
        self.node = node
        self.engine = engine
        self.image = image
        self.kills = kills
        self.docker_writers = docker_writers
        self.put_writers = put_writers
        self.readers = readers
        self.pause = pause
        self.random = random.Random(seed)
        self.result = StormResult()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._up = threading.Event()

    # traffic

    def _acknowledge(self, repo: str, name: str, text: str) -> None:
        with self._lock:
            self.result.acknowledged.setdefault(repo, {})[name] = text

    def _refused(self, what: str) -> None:
        with self._lock:
            self.result.refusals[what] = self.result.refusals.get(what, 0) + 1

    def _attempted(self, repo: str) -> None:
        with self._lock:
            self.result.attempts[repo] = self.result.attempts.get(repo, 0) + 1

    def _docker_writer(self, worker: int) -> None:
        driver = self.node.driver_name
        n = 0
        while not self._done.is_set():
            n += 1
            name, text = f"w{worker}-{n}", secrets.token_hex(4)
            self._attempted(DOCKER_REPO)
            done = self.engine.docker(
                "run",
                "--rm",
                "--pull=never",
                "--network",
                "none",
                "--volume-driver",
                driver,
                "-v",
                f"{driver}/{DOCKER_REPO}@master:/data",
                self.image,
                "sh",
                "-c",
                f"echo {text} > /data/{name}",
                check=False,
                timeout=RUN_TIMEOUT,
            )
            if done.returncode == 0:
                self._acknowledge(DOCKER_REPO, name, text)
            else:
                self._refused(f"docker run {done.returncode}: {done.stderr.strip()[-160:]}")

    def _api_url(self, path: str) -> str:
        return "http+unix://" + str(self.node.api_socket).replace("/", "%2F") + path

    def _put_writer(self, worker: int) -> None:
        session = requests_unixsocket.Session()
        n = 0
        while not self._done.is_set():
            n += 1
            name, text = f"p{worker}-{n}", secrets.token_hex(4)
            self._attempted(PUT_REPO)
            try:
                answer = session.put(
                    self._api_url(f"/v1/repos/{PUT_REPO}/branches/master/files"),
                    params={"path": name},
                    data=(text + "\n").encode(),
                    timeout=CALL_TIMEOUT,
                )
            except (requests.RequestException, OSError):
                time.sleep(0.05)
                continue
            if answer.status_code == 200 and answer.json().get("commit"):
                self._acknowledge(PUT_REPO, name, text)
            else:
                self._refused(f"put {answer.status_code}: {answer.text[:160]}")
            time.sleep(0.02)

    def _reader(self) -> None:
        session = requests_unixsocket.Session()
        base = "http+unix://" + str(self.node.plugin_socket).replace("/", "%2F")
        volume = f"{self.node.driver_name}/{DOCKER_REPO}@master"
        calls = [
            ("VolumeDriver.Get", {"Name": volume}),
            ("VolumeDriver.List", {}),
            ("VolumeDriver.Path", {"Name": volume}),
        ]
        while not self._done.is_set():
            method, body = self.random.choice(calls)
            try:
                answer = session.post(
                    f"{base}/{method}", data=json.dumps(body).encode(), timeout=CALL_TIMEOUT
                )
            except (requests.RequestException, OSError):
                time.sleep(0.05)
                continue
            if answer.status_code >= 500 and "internal error" in answer.text:
                with self._lock:
                    self.result.plugin_errors.append(f"{method}: {answer.text[:300]}")
            time.sleep(0.05)

    # the storm

    def run(self, settle_timeout: float = 60.0) -> StormResult:
        """Storm, stop the traffic, settle, and read what the branches hold."""
        self._prepare()
        threads = [
            *(
                threading.Thread(target=self._docker_writer, args=(i,))
                for i in range(self.docker_writers)
            ),
            *(
                threading.Thread(target=self._put_writer, args=(i,))
                for i in range(self.put_writers)
            ),
            *(threading.Thread(target=self._reader) for _ in range(self.readers)),
        ]
        for thread in threads:
            thread.start()
        try:
            for _ in range(self.kills):
                time.sleep(self.random.uniform(*self.pause))
                self.node.kill()
                self.result.kills += 1
                started = time.monotonic()
                self.node.start()
                self.result.restarts.append(time.monotonic() - started)
            time.sleep(self.pause[1])
        finally:
            self._done.set()
            for thread in threads:
                thread.join(timeout=RUN_TIMEOUT + 30)
        self._settle(settle_timeout)
        for repo in (DOCKER_REPO, PUT_REPO):
            self.result.committed[repo] = self.head_files(repo)
        return self.result

    def _prepare(self) -> None:
        made = requests_unixsocket.Session().post(
            self._api_url("/v1/repos"), json={"name": PUT_REPO}, timeout=CALL_TIMEOUT
        )
        assert made.status_code == 201, made.text

    def _settle(self, timeout: float) -> None:
        """Wait (bounded) until no container runs and no mount record is left."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            running = self.engine.docker("ps", "-q", check=False).stdout.split()
            records = self._records()
            if not running and not records:
                break
            time.sleep(0.25)
        self.result.settle_seconds = time.monotonic() - started
        self.result.stuck = self._records()

    def _records(self) -> list[dict[str, Any]]:
        mounts: list[dict[str, Any]] = self.node.api("GET", "/v1/mounts").json()["mounts"]
        return mounts

    def head_files(self, repo: str) -> dict[str, str]:
        """Every file at the head of ``repo@master``: name -> first line."""
        session = requests_unixsocket.Session()
        listed = session.get(
            self._api_url(f"/v1/repos/{repo}/commits/master/files"), timeout=CALL_TIMEOUT
        )
        if listed.status_code == 404:
            return {}
        assert listed.status_code == 200, listed.text
        files = {}
        for entry in listed.json()["entries"]:
            if entry["kind"] != "file":
                continue
            body = session.get(
                self._api_url(f"/v1/repos/{repo}/commits/master/content"),
                params={"path": entry["name"]},
                timeout=CALL_TIMEOUT,
            )
            files[entry["name"]] = body.content.decode().strip()
        return files
