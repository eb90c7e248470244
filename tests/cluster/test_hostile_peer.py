"""A hostile holder: a node that fetches a commit over the node API stays confined to it
(DESIGN.md invariant 8) whatever the holder sends.

A real node (node0) makes the commits of a repo it alone holds; node1 fetches the first.
Then node0 is killed and a fake peer, a small HTTP server of this test that answers the
node API's stream route with the cluster token, registers in etcd under node0's id (before
node0's lease runs out, so the repo never loses its replica and nothing repairs it). Asked
for the second commit, it sends crafted streams of the test generator (tests/sendstream.py,
tests/hostile_streams.py), named for that commit and built on the first. node1, asked to
mount the commit and, over its node API, to fetch it, must refuse each stream with words
saying so (never a 500), leave nothing outside, keep no partial subvolume, not list itself
as a holder, and keep serving. A stream that stalls must be given up within the peer read
timeout. Last, the fake peer replays node0's genuine stream and node1 takes it: the
refusals were the streams', not the fake peer's.

The tests share one cluster and run in file order (the last one makes node1 a holder).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from pfs_volume.btrfs import ioctl
from pfs_volume.cluster.membership import NodeRegistry
from pfs_volume.cluster.peer import READ_TIMEOUT, decode_stream
from pfs_volume.frames import encode_frames
from pfs_volume.meta.etcd_client import EtcdClient
from tests import hostile_streams, sendstream
from tests.cluster.conftest import (
    LEASE_TTL,
    Cluster,
    ClusterNode,
    holders,
    repo_placed_on,
    tree_digest,
    wait_for,
)
from tests.etcd_cluster import free_port
from tests.hostile_streams import HOSTILE, Target

# One module-scoped scene on one xdist worker; the stall bound is timing, so it runs one
# after another with the other timing-bound daemon tests.
pytestmark = pytest.mark.xdist_group("timing-daemon")

KINDS = {
    "symlink to the host then write through it": "mkfile of 'x/evil'",
    "symlink to / then rename a sibling commit": "goes through 'x', a symbolic link",
    "mkfile ../../x": "mkfile of '../../evil': a path must be relative",
    "mkfile absolute": "/host/evil': a path must be relative",
    "clone from a host file": "clone of '../../../../../../etc/hostname'",
    "clone from another repo": "a clone from a subvolume that is neither it nor its base",
    "a second subvolume": "commands follow its end command",
    "incremental: write through a symlink of the base": "mkfile of 'd/evil'",
}
"""A representative subset of the catalogue (paths through links, ``..``, absolute paths,
clones from outside, a second subvolume, an incremental stream on the base), each with
the words of its refusal: every stream is refused at its hostile command, not sooner."""

FAKE_HOST = "127.0.0.5"
STALL_SLACK = 10.0
"""Seconds a stalled fetch may take beyond the read timeout (killing btrfs receive and
deleting its snapshot)."""

Serve = Callable[[str | None], Iterable[bytes]]
"""What the fake peer sends for a stream request with this ``parent``: the raw send
stream (it frames it)."""


class FakePeer:
    """An HTTP server on a loopback address that speaks the stream route of the node API
    (``GET /v1/peer/repos/<repo>/commits/<commit>/stream``) with the cluster token, and
    sends what ``serve`` returns. Every stream request is recorded in ``asked``.

    Args:
        token: the cluster token requests must carry.
    """

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"
        self.address = f"http://{FAKE_HOST}:{free_port(FAKE_HOST)}"
        self.serve: Serve = lambda parent: [b""]
        self.asked: list[tuple[str, str | None]] = []
        self.error: tuple[str, str, str] | None = None
        """Status, code and message of an error to answer instead of a stream."""
        self.release = threading.Event()
        """Set at the end: a stalled stream ends."""
        host, port = self.address.removeprefix("http://").split(":")
        self._server: BaseWSGIServer = make_server(host, int(port), self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakePeer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI app: the stream route, or the node API's JSON errors."""
        parts = environ["PATH_INFO"].split("/")
        if environ.get("HTTP_AUTHORIZATION") != self.expected:
            return _error(start_response, "401 Unauthorized", "unauthorized", "no token")
        if len(parts) != 8 or parts[1:4] != ["v1", "peer", "repos"] or parts[7] != "stream":
            return _error(start_response, "404 Not Found", "not_found", "a fake peer")
        query = dict(
            item.split("=", 1) for item in environ.get("QUERY_STRING", "").split("&") if item
        )
        parent = query.get("parent")
        self.asked.append((parts[6], parent))
        if self.error is not None:
            return _error(start_response, *self.error)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return encode_frames(self.serve(parent))


def _error(start_response: Callable[..., Any], status: str, code: str, text: str) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps({"error": {"code": code, "message": text}}).encode()]


def commands(stream: bytes) -> Iterator[tuple[int, list[sendstream.Attr]]]:
    """The commands of a send stream: number and attributes."""
    offset = len(sendstream.MAGIC) + 4
    while offset < len(stream):
        length, cmd, _crc = struct.unpack_from("<IHI", stream, offset)
        offset += 10
        end = offset + length
        attrs = []
        while offset < end:
            kind, size = struct.unpack_from("<HH", stream, offset)
            attrs.append((kind, stream[offset + 4 : offset + 4 + size]))
            offset += 4 + size
        yield cmd, attrs


def retarget(stream: bytes, names: dict[bytes, bytes], parent_ctransid: int) -> bytes:
    """``stream`` with every attribute's ``names`` replaced (same lengths: commit ids,
    UUIDs) and a snapshot's parent ctransid set, its CRCs computed anew: the catalogue's
    stream for this cluster's commits."""
    out = [stream[: len(sendstream.MAGIC) + 4]]
    for cmd, attrs in commands(stream):
        fixed = []
        for kind, value in attrs:
            for old, new in names.items():
                value = value.replace(old, new)
            if cmd == sendstream.SNAPSHOT and kind == sendstream.A_CLONE_CTRANSID:
                value = struct.pack("<Q", parent_ctransid)
            fixed.append((kind, value))
        out.append(sendstream.command(cmd, *fixed))
    return b"".join(out)


def footprint(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root`` (links not followed): its kind, mode and content
    digest (a link's target)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                digest = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = ""
            found[str(path.relative_to(root))] = (stat.filemode(info.st_mode), info.st_size, digest)
    return found


def subvolumes(pool: Path) -> list[str]:
    """Every subvolume of the pool, by path."""
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", "-o", str(pool)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(line.split(" path ", 1)[1] for line in listed.splitlines())


@dataclass
class Scene:
    """The cluster, the fake peer in node0's place, and what node1 must leave as it is."""

    cluster: Cluster
    fake: FakePeer
    repo: str
    first: str
    second: str
    second_files: dict[str, str]
    genuine: dict[str | None, bytes]
    """node0's send stream of the second commit: on the first (key: its id), full (None)."""
    target: Target
    names: dict[bytes, bytes]
    parent_ctransid: int

    @property
    def receiver(self) -> ClusterNode:
        return self.cluster.nodes[1]

    def outside(self) -> dict[str, Any]:
        """What no stream may change: the host folder with its canary, /etc, node1's
        pool (every file of every repo) and its subvolumes."""
        pool = self.receiver.pool_root
        # Left out: receive markers (``receiving/``), which node1's own repair writes and
        # clears around each of its background tries at the same commit.
        kept = {k: v for k, v in footprint(pool).items() if k.split("/")[0] != "receiving"}
        return {
            "host": footprint(self.target.host),
            "etc": sorted(os.listdir("/etc")),
            "pool": kept,
            "subvolumes": subvolumes(pool),
        }

    def assert_healthy(self) -> None:
        """node1 answers and still serves the first commit it holds."""
        node = self.receiver
        assert node.process is not None and node.process.poll() is None, "node1 died"
        assert node.api("GET", "/v1/health").status_code == 200
        assert "Traceback" not in node.log()
        assert set(node.read_commit(self.repo, self.first)) == {"d/f"}
        assert "node1" not in holders(node, self.repo, self.second)
        assert not (node.pool_root / "repos" / self.repo / "commits" / self.second).exists()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    root = tmp_path_factory.mktemp("hostile-peer")
    cluster = Cluster(root)
    fake = FakePeer(cluster.token)
    registry: NodeRegistry | None = None
    try:
        cluster.start()
        maker, receiver, _other = cluster.nodes
        repo = repo_placed_on("node0", "victim")
        other = repo_placed_on("node0", "other")
        for name in (repo, other):
            maker.cli("repo", "create", name, "--replicas", "1")
        first = maker.write_commit(repo, {"d/f": b"first\n"})
        second = maker.write_commit(repo, {"d/g": b"second\n"})
        second_files = maker.read_commit(repo, second)
        other_commit = maker.write_commit(other, {"f": os.urandom(8192)})
        receiver.read_commit(repo, first)
        receiver.read_commit(other, other_commit)
        genuine = {
            parent: _stream_of(maker, cluster.token, repo, second, parent)
            for parent in (first, None)
        }
        (_cmd, snapshot), *_ = commands(genuine[first])
        attrs = dict(snapshot)
        host = root / "host"
        host.mkdir()
        (host / "canary").write_bytes(b"canary\n")
        other_copy = receiver.pool_root / "repos" / other / "commits" / other_commit
        received = ioctl.subvolume_info(other_copy).received_uuid
        assert received is not None
        target = Target(host=host, other_uuid=uuid.UUID(received))
        names = {
            hostile_streams.FIRST.encode(): first.encode(),
            hostile_streams.SECOND.encode(): second.encode(),
            hostile_streams.FIRST_UUID.bytes: attrs[sendstream.A_CLONE_UUID],
        }
        (parent_ctransid,) = struct.unpack("<Q", attrs[sendstream.A_CLONE_CTRANSID])

        # node0 dies; before its lease runs out the fake peer takes its key (a put under
        # its own lease), so node0 never leaves the list of live nodes.
        maker.kill()
        fake.start()
        registry = NodeRegistry(
            EtcdClient(cluster.etcd.endpoints),
            "node0",
            fake.address,
            space=lambda: (1 << 30, 1 << 30),
            ttl=LEASE_TTL,
        )
        _ = registry.lease  # registers, over node0's record
        registry.start()  # keeps the lease alive
        nodes = receiver.cli_json("node", "list")
        assert {n["id"]: n["address"] for n in nodes}["node0"] == fake.address
        yield Scene(
            cluster, fake, repo, first, second, second_files, genuine, target, names,
            parent_ctransid,
        )  # fmt: skip
    finally:
        if registry is not None:
            registry.stop()
        fake.stop()
        cluster.cleanup()


@pytest.fixture(autouse=True)
def node_logs(request: pytest.FixtureRequest, attach_log: Callable[[str, Path], None]) -> None:
    """The node logs, shown when a test fails."""
    if "scene" in request.fixturenames:
        scene: Scene = request.getfixturevalue("scene")
        for node in scene.cluster.nodes:
            attach_log(f"{node.node_id} log", node.log_path)


def _stream_of(node: ClusterNode, token: str, repo: str, commit: str, parent: str | None) -> bytes:
    """A real node's send stream of ``commit`` (unframed), as a peer gets it."""
    response = requests.get(
        f"{node.address}/v1/peer/repos/{repo}/commits/{commit}/stream",
        params={"parent": parent} if parent else None,
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return b"".join(decode_stream(response.raw.read))


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_stream_from_a_holder_is_refused(scene: Scene, kind: str) -> None:
    node = scene.receiver
    stream = retarget(HOSTILE[kind](scene.target), scene.names, scene.parent_ctransid)
    scene.fake.serve = lambda parent: [stream]
    scene.fake.asked.clear()
    before = scene.outside()

    reply = node.mount(node.volume(scene.repo, scene.second), secrets.token_hex(4))
    assert "refused" in reply.get("Err", "") and KINDS[kind] in reply["Err"], reply
    assert scene.fake.asked, "the fake peer was never asked for the stream"
    assert all(commit == scene.second for commit, _parent in scene.fake.asked)

    fetched = requests.post(
        f"{node.address}/v1/peer/repos/{scene.repo}/commits/{scene.second}/fetch",
        json={"from": "node0"},
        headers={"Authorization": f"Bearer {scene.cluster.token}"},
        timeout=60,
    )
    assert fetched.status_code == 400, fetched.text
    error = fetched.json()["error"]
    assert error["code"] == "stream_refused" and KINDS[kind] in error["message"], error

    assert scene.outside() == before
    assert (scene.target.host / "canary").read_bytes() == b"canary\n"
    scene.assert_healthy()


ODD_ANSWERS = {
    "an internal error": ("500 Internal Server Error", "internal", "it broke"),
    "an invalid name": ("400 Bad Request", "invalid_name", "'victim' is no name"),
    "an unknown code": ("418 I'm a teapot", "teapot", "short and stout"),
}


@pytest.mark.parametrize("answer", ODD_ANSWERS)
def test_holder_answering_what_no_node_answers_is_unavailable(scene: Scene, answer: str) -> None:
    """A holder's error other than lacking the commit or its base says nothing of this
    node's request: the fetch is unavailable (503), naming the holder and its words."""
    node = scene.receiver
    scene.fake.error = ODD_ANSWERS[answer]
    try:
        reply = node.mount(node.volume(scene.repo, scene.second), secrets.token_hex(4))
        assert "could not be fetched" in reply.get("Err", ""), reply
        assert scene.fake.address in reply["Err"] and ODD_ANSWERS[answer][2] in reply["Err"]
        fetched = requests.post(
            f"{node.address}/v1/peer/repos/{scene.repo}/commits/{scene.second}/fetch",
            json={"from": "node0"},
            headers={"Authorization": f"Bearer {scene.cluster.token}"},
            timeout=60,
        )
        assert fetched.status_code == 503, fetched.text
    finally:
        scene.fake.error = None
    scene.assert_healthy()


def test_stalled_stream_is_given_up_within_the_read_timeout(scene: Scene) -> None:
    node = scene.receiver
    stalled = threading.Event()

    def first_command_then_nothing(parent: str | None) -> Iterator[bytes]:
        stream = scene.genuine[parent if parent in scene.genuine else None]
        first_length = struct.unpack_from("<I", stream, len(sendstream.MAGIC) + 4)[0]
        yield stream[: len(sendstream.MAGIC) + 4 + 10 + first_length]
        stalled.set()
        scene.fake.release.wait(READ_TIMEOUT * 4)

    scene.fake.serve = first_command_then_nothing
    scene.fake.asked.clear()
    before = scene.outside()
    started = time.monotonic()
    reply = node.mount(node.volume(scene.repo, scene.second), secrets.token_hex(4))
    took = time.monotonic() - started
    assert stalled.is_set(), "the fake peer never got to stall"
    assert "could not be fetched" in reply.get("Err", ""), reply
    assert "timed out" in reply["Err"], reply
    assert READ_TIMEOUT - 1 <= took <= READ_TIMEOUT + STALL_SLACK, (took, scene.fake.asked)
    assert scene.outside() == before
    scene.assert_healthy()


def test_the_genuine_stream_from_the_fake_peer_is_taken(scene: Scene) -> None:
    """The control: the same fake peer replaying node0's own stream is a good holder."""
    node = scene.receiver
    scene.fake.serve = lambda parent: [scene.genuine[parent if parent in scene.genuine else None]]
    scene.fake.asked.clear()
    assert node.read_commit(scene.repo, scene.second) == scene.second_files
    assert scene.fake.asked == [(scene.second, scene.first)], "not fetched incrementally"
    wait_for(
        lambda: "node1" in holders(node, scene.repo, scene.second), 10, "node1 listed as holder"
    )
    assert scene.receiver.api("GET", "/v1/health").status_code == 200
    assert tree_digest(scene.target.host) == {"canary": hashlib.sha256(b"canary\n").hexdigest()}
