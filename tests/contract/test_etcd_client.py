"""EtcdClient against a real etcd: reads, writes, transactions, leases, and what happens
when endpoints are dead or stop answering."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from pfs_volume.errors import AmbiguousWrite, LeaseLost, StorageError, Unavailable
from pfs_volume.meta import etcd_client as etcd_client_module
from pfs_volume.meta.etcd_client import (
    MAX_TXN_OPS,
    EtcdClient,
    KeyValue,
    create_revision_equals,
    delete_op,
    delete_prefix_op,
    key_exists,
    mod_revision_equals,
    prefix_empty,
    put_op,
    value_equals,
    version_equals,
)
from tests.etcd_cluster import EtcdCluster, free_port

# Budgets and fail-fast bounds are timing: run on one xdist worker, one after another
# with the other etcd timing tests.
pytestmark = pytest.mark.xdist_group("timing-etcd")


@pytest.fixture
def client(etcd_client: EtcdClient) -> EtcdClient:
    return etcd_client


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a hung server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_put_get_delete(client: EtcdClient, etcd_prefix: str) -> None:
    key = f"{etcd_prefix}/k"
    assert client.get(key) is None
    client.put(key, "vä")
    first = client.get(key)
    assert first is not None and first.value == "vä".encode() and first.text == "vä"
    assert first.version == 1 and first.create_revision == first.mod_revision > 0
    client.put(key, b"\x00\xff")
    second = client.get(key)
    assert second is not None and second.value == b"\x00\xff" and second.version == 2
    assert second.create_revision == first.create_revision < second.mod_revision
    assert client.delete(key) is True
    assert client.delete(key) is False
    assert client.get(key) is None


def test_prefix_reads_are_sorted_paged_and_counted(
    client: EtcdClient, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_client_module, "PAGE_SIZE", 3)
    for i in reversed(range(10)):
        client.put(f"{etcd_prefix}/p/{i:02d}", str(i))
    client.put(f"{etcd_prefix}/p0", "not under p/")
    found = client.get_prefix(f"{etcd_prefix}/p/")
    assert [kv.text for kv in found] == [str(i) for i in range(10)]
    assert [kv.key for kv in client.get_prefix(f"{etcd_prefix}/p/", limit=4)] == [
        f"{etcd_prefix}/p/{i:02d}" for i in range(4)
    ]
    assert client.get_prefix(f"{etcd_prefix}/p/", keys_only=True)[0].value == b""
    assert client.count_prefix(f"{etcd_prefix}/p/") == 10
    assert client.count_prefix(f"{etcd_prefix}/nothing/") == 0
    many = client.get_many([f"{etcd_prefix}/p/01", f"{etcd_prefix}/none", f"{etcd_prefix}/p0"])
    assert [kv.text if kv else None for kv in many] == ["1", None, "not under p/"]


def test_transactions(client: EtcdClient, etcd_prefix: str) -> None:
    key, other = f"{etcd_prefix}/t", f"{etcd_prefix}/u"
    assert client.txn([create_revision_equals(key, 0)], [put_op(key, "a")]) is True
    assert client.txn([create_revision_equals(key, 0)], [put_op(key, "b")]) is False
    kv = client.get(key)
    assert kv is not None and kv.text == "a"
    assert client.txn([value_equals(key, "a"), version_equals(key, 1), key_exists(key)], [])
    assert not client.txn([key_exists(other)], [])
    swapped = client.txn(
        [mod_revision_equals(key, kv.mod_revision)], [put_op(key, "c")], [put_op(other, "lost")]
    )
    assert swapped and client.get(other) is None
    stale = client.txn(
        [mod_revision_equals(key, kv.mod_revision)], [put_op(key, "d")], [put_op(other, "lost")]
    )
    assert not stale and client.get(key).text == "c"  # type: ignore[union-attr]
    assert client.get(other).text == "lost"  # type: ignore[union-attr]
    assert not client.txn([prefix_empty(f"{etcd_prefix}/")], [])
    assert client.txn([prefix_empty(f"{etcd_prefix}/nothing/")], [])
    assert client.txn([], [delete_prefix_op(f"{etcd_prefix}/"), put_op(f"{etcd_prefix}x", "")])
    assert client.count_prefix(f"{etcd_prefix}/") == 0
    assert client.txn([], [delete_op(f"{etcd_prefix}x")])


def test_etcd_refusals_are_storage_errors(client: EtcdClient, etcd_prefix: str) -> None:
    too_many = [put_op(f"{etcd_prefix}/{i}", "") for i in range(MAX_TXN_OPS + 1)]
    with pytest.raises(StorageError, match="too many operations"):
        client.txn([], too_many)
    assert client.count_prefix(f"{etcd_prefix}/") == 0
    assert client.txn([], too_many[:MAX_TXN_OPS], too_many[:MAX_TXN_OPS])  # at the limit
    assert client.count_prefix(f"{etcd_prefix}/") == MAX_TXN_OPS


def test_leases_expire_and_then_cannot_be_refreshed(client: EtcdClient, etcd_prefix: str) -> None:
    lease = client.grant_lease(2)
    key = f"{etcd_prefix}/leased"
    client.put(key, "x", lease)
    kv = client.get(key)
    assert kv is not None and kv.lease == lease
    assert 1 <= client.refresh_lease(lease) <= 2
    deadline = time.monotonic() + 5
    while client.get(key) is not None:
        assert time.monotonic() < deadline, "a leased key outlived its lease"
        time.sleep(0.1)
    with pytest.raises(LeaseLost):
        client.refresh_lease(lease)
    with pytest.raises(LeaseLost):
        client.put(key, "y", lease)
    client.revoke_lease(lease)  # no error when it is gone already


def test_revoking_a_lease_deletes_its_keys(client: EtcdClient, etcd_prefix: str) -> None:
    lease = client.grant_lease(30)
    client.put(f"{etcd_prefix}/a", "1", lease)
    client.revoke_lease(lease)
    assert client.get(f"{etcd_prefix}/a") is None


def test_dead_endpoints_fail_fast_and_say_so() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    client = EtcdClient(dead, timeout=2)
    start = time.monotonic()
    calls: list[Callable[[], object]] = [lambda: client.get("k"), lambda: client.put("k", "v")]
    for call in calls:
        with pytest.raises(Unavailable) as caught:
            call()
        assert not isinstance(caught.value, AmbiguousWrite)  # nothing reached a server
        message = str(caught.value)
        assert all(endpoint in message for endpoint in dead)
        assert "does not fall back to local metadata" in message
        assert "Connection refused" in message
    assert time.monotonic() - start < 2
    assert client.healthy() is False
    client.close()


def test_a_dead_first_endpoint_fails_over(etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    client = EtcdClient([f"http://127.0.0.1:{free_port()}", *etcd_cluster.endpoints])
    client.put(f"{etcd_prefix}/f", "v")  # a write that never reached a server moves on
    assert client.get(f"{etcd_prefix}/f").text == "v"  # type: ignore[union-attr]
    assert client.healthy()
    client.close()


def test_a_silent_server_is_passed_over(
    etcd_cluster: EtcdCluster, etcd_prefix: str, silent_endpoint: str
) -> None:
    client = EtcdClient([silent_endpoint, *etcd_cluster.endpoints], timeout=0.5)
    start = time.monotonic()
    client.put(f"{etcd_prefix}/s", "v")  # no reply from the silent one: sent again, once
    assert time.monotonic() - start < 1.5
    kv = client.get(f"{etcd_prefix}/s")
    assert kv is not None and kv.text == "v" and kv.version == 1
    client.close()


def test_no_answer_within_the_budget_is_unavailable_and_ambiguous_for_writes(
    silent_endpoint: str,
) -> None:
    client = EtcdClient([silent_endpoint], timeout=0.3, budget=1.0)
    start = time.monotonic()
    with pytest.raises(AmbiguousWrite, match="may or may not have been applied") as caught:
        client.put("/s", "v")
    assert caught.value.ambiguous and isinstance(caught.value, Unavailable)
    assert silent_endpoint in str(caught.value) and "no reply within" in str(caught.value)
    with pytest.raises(Unavailable, match=r"did not serve the request within [01]\.\d s") as read:
        client.get("/s")
    assert not isinstance(read.value, AmbiguousWrite)
    assert time.monotonic() - start < 2 * (1.0 + 0.3) + 0.5
    client.close()


def test_threads_share_a_client(client: EtcdClient, etcd_prefix: str) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                key = f"{etcd_prefix}/th/{n}/{i}"
                client.put(key, str(i))
                assert client.get(key).text == str(i)  # type: ignore[union-attr]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.count_prefix(f"{etcd_prefix}/th/") == 160


def test_bad_endpoints_are_refused() -> None:
    with pytest.raises(ValueError):
        EtcdClient([])
    with pytest.raises(ValueError, match="not an http"):
        EtcdClient(["127.0.0.1:2379"])


def present(client: EtcdClient, key: str) -> KeyValue:
    found = client.get(key)
    assert found is not None, key
    return found


def rotated(endpoints: list[str], first: int) -> list[str]:
    """The endpoints starting with member ``first``: the one a new client prefers."""
    return endpoints[first:] + endpoints[:first]


def run_concurrently(
    calls: dict[str, Callable[[], object]],
) -> tuple[dict[str, object], dict[str, float]]:
    """Run each call in its own thread, all at once; each one's result (or exception) and
    its duration in seconds."""
    outcomes: dict[str, object] = {}
    took: dict[str, float] = {}

    def run(label: str, call: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            outcomes[label] = call()
        except Exception as exc:  # reported by the caller
            outcomes[label] = exc
        took[label] = time.monotonic() - started

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, took


def test_writes_and_reads_ride_out_the_loss_of_the_leader_exactly_once(tmp_path: Path) -> None:
    """Right after the leader is killed, a write sent to a follower is dropped by etcd
    (the follower forwards it to the dead leader) and answered only after etcd's request
    timeout; reads wait for the election. Neither may show: every call succeeds, and
    each write is applied once."""
    cluster = EtcdCluster(tmp_path, members=3)
    try:
        cluster.start()
        latencies: list[float] = []
        for round_ in range(3):
            leader = cluster.leader()
            follower = (leader + 1) % 3
            clients = {
                "via follower": EtcdClient(rotated(cluster.endpoints, follower)),
                "via dead leader": EtcdClient(rotated(cluster.endpoints, leader)),
            }
            before: dict[str, KeyValue] = {}
            for name, client in clients.items():
                client.put(f"/{name}/put", f"before {round_}")  # connections open, warm
                client.txn([key_exists(f"/{name}/cas")], [], [put_op(f"/{name}/cas", "0")])
                before[f"{name}/cas"] = present(client, f"/{name}/cas")
                before[f"{name}/put"] = present(client, f"/{name}/put")
            calls: dict[str, Callable[[], object]] = {}
            for name, client in clients.items():
                cas = before[f"{name}/cas"]
                calls[f"{name}: cas"] = partial(
                    client.txn,
                    [mod_revision_equals(cas.key, cas.mod_revision)],
                    [put_op(cas.key, str(int(cas.text) + 1))],
                )
                calls[f"{name}: put"] = partial(client.put, f"/{name}/put", f"after {round_}")
                calls[f"{name}: get"] = partial(client.get, f"/{name}/put")
            cluster.kill(leader)
            outcomes, took = run_concurrently(calls)
            latencies.extend(took.values())

            for name, client in clients.items():
                assert outcomes[f"{name}: cas"] is True, outcomes
                assert outcomes[f"{name}: put"] is None, outcomes
                got = outcomes[f"{name}: get"]
                assert isinstance(got, KeyValue), outcomes
                assert got.text in (f"before {round_}", f"after {round_}")
                cas, put = present(client, f"/{name}/cas"), present(client, f"/{name}/put")
                assert cas.text == str(int(before[f"{name}/cas"].text) + 1)
                assert cas.version == before[f"{name}/cas"].version + 1  # applied once
                assert put.text == f"after {round_}"
                assert put.version == before[f"{name}/put"].version + 1  # applied once
                client.close()
            cluster.restart(leader)
        # The slowest call: a write the follower forwarded to the dead leader, sent again
        # after DEFAULT_TIMEOUT (2 s) once a new leader is elected (~0.6 s here).
        assert max(latencies) < 2 * etcd_client_module.DEFAULT_TIMEOUT + 2
    finally:
        cluster.cleanup()


def test_without_quorum_calls_fail_within_the_budget_and_with_etcd_down_at_once(
    tmp_path: Path,
) -> None:
    cluster = EtcdCluster(tmp_path, members=3)
    try:
        cluster.start()
        client = EtcdClient(cluster.endpoints, budget=3.0)
        client.put("/k", "1")
        cluster.kill(1)
        cluster.kill(2)  # member 0 alone: no quorum, no leader
        start = time.monotonic()
        with pytest.raises(Unavailable, match=r"did not serve the request within [23]\.\d s"):
            client.get("/k")
        with pytest.raises(Unavailable):  # ambiguous or refused, never applied twice
            client.put("/k", "2")
        assert time.monotonic() - start < 2 * (3.0 + etcd_client_module.DEFAULT_TIMEOUT)
        assert client.healthy() is False

        cluster.kill(0)  # all down: nothing to wait for
        start = time.monotonic()
        with pytest.raises(Unavailable, match="unreachable") as caught:
            client.put("/k", "3")
        assert not isinstance(caught.value, AmbiguousWrite)  # nothing reached a server
        assert time.monotonic() - start < 1.0

        cluster.restart_all()
        kv = client.get("/k")
        assert kv is not None and kv.text in ("1", "2")  # "2": the put was ambiguous
        client.put("/k", "4")
        assert client.get("/k").text == "4"  # type: ignore[union-attr]
        client.close()
    finally:
        cluster.cleanup()
