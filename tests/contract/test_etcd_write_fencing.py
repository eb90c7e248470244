"""EtcdClient's writes are applied exactly once, however often they are sent: a write
whose reply was lost is reported as applied when it was, and a copy that reaches etcd
late is never applied on top of later writes.

Lost replies and late copies come from ``LossyProxy``, an endpoint in front of the real
etcd that passes requests on and never answers: deterministic, unlike killing a leader.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from pfs_volume.meta.etcd_client import (
    EtcdClient,
    KeyValue,
    put_op,
    version_equals,
)
from tests.etcd_cluster import EtcdCluster

# Its bounds are timing: run on one xdist worker, one after another with the other etcd
# timing tests.
pytestmark = pytest.mark.xdist_group("timing-etcd")

TIMEOUT = 0.3
"""The client's per-request timeout in these tests: how long a lost reply costs."""


class LossyProxy:
    """An HTTP endpoint that passes each request on to ``upstream`` (after ``delay``
    seconds) and never answers the client, which sees its request time out. etcd's
    replies are kept in ``replies``, in the order they came."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.replies: list[dict[str, Any]] = []
        self.replied = threading.Condition()
        self._session = requests.Session()
        self._session.trust_env = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _SwallowingHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def relay(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        """Send one request on to etcd, after the delay, in the background."""

        def send() -> None:
            time.sleep(self.delay)
            reply = self._session.post(self.upstream + path, data=body, headers=headers)
            with self.replied:
                self.replies.append(reply.json())
                self.replied.notify_all()

        threading.Thread(target=send, daemon=True).start()

    def wait_for_replies(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first ``count`` replies of etcd, once they came."""
        with self.replied:
            assert self.replied.wait_for(lambda: len(self.replies) >= count, timeout)
            return self.replies[:count]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()


class _SwallowingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        passed_on = {k: v for k, v in self.headers.items() if k.lower().startswith("grpc-")}
        passed_on["Content-Type"] = "application/json"
        self.server.proxy.relay(self.path, body, passed_on)  # type: ignore[attr-defined]
        self.rfile.read(1)  # no reply: wait until the client gives up and hangs up
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def lossy(etcd_cluster: EtcdCluster) -> Iterator[LossyProxy]:
    """Requests pass on at once; replies are lost."""
    proxy = LossyProxy(etcd_cluster.endpoints[0])
    yield proxy
    proxy.close()


@pytest.fixture
def late(etcd_cluster: EtcdCluster) -> Iterator[LossyProxy]:
    """Requests pass on a second later, long after the client gave up on them."""
    proxy = LossyProxy(etcd_cluster.endpoints[0], delay=1.0)
    yield proxy
    proxy.close()


def through(proxy: LossyProxy, etcd_cluster: EtcdCluster, etcd_prefix: str) -> EtcdClient:
    """A client that sends its first request through the proxy, then to etcd itself."""
    return EtcdClient(
        [proxy.endpoint, *etcd_cluster.endpoints],
        timeout=TIMEOUT,
        marker_prefix=f"{etcd_prefix}/markers/",
    )


def key(client: EtcdClient, name: str) -> KeyValue:
    found = client.get(name)
    assert found is not None, name
    return found


def test_a_transaction_whose_reply_was_lost_is_reported_as_applied_once(
    lossy: LossyProxy, etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    counter, other = f"{etcd_prefix}/counter", f"{etcd_prefix}/other"
    client = through(lossy, etcd_cluster, etcd_prefix)
    start = time.monotonic()
    assert client.txn([version_equals(counter, 0)], [put_op(counter, "1")]) is True
    assert time.monotonic() - start < TIMEOUT + 0.5
    applied = lossy.wait_for_replies(1)[0]
    assert applied["succeeded"] and applied["responses"][0]["response_txn"]["succeeded"]
    assert key(client, counter).text == "1" and key(client, counter).version == 1
    client.close()

    # The compares failed and the failure branch ran: reported as such, run once.
    client = through(lossy, etcd_cluster, etcd_prefix)
    assert not client.txn(
        [version_equals(counter, 0)], [put_op(counter, "again")], [put_op(other, "lost")]
    )
    assert key(client, counter).version == 1
    assert key(client, other).text == "lost" and key(client, other).version == 1
    client.close()
    assert len(lossy.wait_for_replies(2)) == 2


def test_puts_and_deletes_whose_reply_was_lost_are_applied_once(
    lossy: LossyProxy, etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    name = f"{etcd_prefix}/k"
    client = through(lossy, etcd_cluster, etcd_prefix)
    client.put(name, "v")
    assert key(client, name).version == 1
    client.close()

    client = through(lossy, etcd_cluster, etcd_prefix)
    assert client.delete(name) is True  # the lost copy deleted it: it existed
    assert client.get(name) is None
    client.close()
    assert len(lossy.wait_for_replies(2)) == 2


def test_a_late_copy_of_a_write_never_lands_on_top_of_later_writes(
    late: LossyProxy, etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    """What a plain retry gets wrong: the first copy of ``put(k, "a")`` reaches etcd after
    the retry succeeded and after ``put(k, "b")``; applied then, it would turn k back to
    "a". The fence makes it a no-op."""
    name = f"{etcd_prefix}/k"
    client = through(late, etcd_cluster, etcd_prefix)
    client.put(name, "a")  # the proxy holds the first copy; the second is applied
    client.put(name, "b")
    assert late.replies == []  # both done before the late copy arrives
    late_reply = late.wait_for_replies(1)[0]
    assert not late_reply.get("succeeded"), json.dumps(late_reply)
    found = key(client, name)
    assert found.text == "b" and found.version == 2
    client.close()


def test_every_thread_has_its_own_marker_and_a_moved_marker_is_caught_up_with(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    markers = f"{etcd_prefix}/markers/"
    client = EtcdClient(etcd_cluster.endpoints, marker_prefix=markers)
    name = f"{etcd_prefix}/k"
    client.put(name, "0")
    threads = [
        threading.Thread(target=client.put, args=(f"{etcd_prefix}/t{i}", "")) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.count_prefix(f"{markers}{client.client_id}/") in (2, 3, 4)  # idents reused
    assert client.txn([version_equals(name, 1)], [])  # nothing to apply: no marker write
    mine = f"{markers}{client.client_id}/{threading.get_ident()}"
    before = key(client, mine)

    # As if an earlier write of this thread had landed late: the marker moved unseen.
    intruder = EtcdClient(etcd_cluster.endpoints)
    intruder.put(mine, "moved")
    intruder.close()
    assert client.txn([version_equals(name, 1)], [put_op(name, "1")]) is True
    assert key(client, name).version == 2
    assert key(client, mine).version == before.version + 2  # moved, then caught up with
    client.close()
