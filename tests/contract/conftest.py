"""Contract fixtures: every test of a MetadataStore runs against each backend, a SQLite
file in ``tmp_path`` and a real etcd (one single-member cluster for the whole session,
under a key prefix of its own per test, so tests never see each other's records).

A test meant for one backend only says so with ``@pytest.mark.backend("etcd", reason=...)``:
the other backend's run is skipped with that reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pfs_volume.meta import EtcdClient, EtcdStore, MetadataStore, SqliteStore
from tests.etcd_cluster import EtcdCluster

BACKENDS = ["sqlite", "etcd"]
NODE = "node-a"


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One real single-member etcd for the session, killed at the end."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def etcd_client(etcd_cluster: EtcdCluster) -> Iterator[EtcdClient]:
    client = EtcdClient(etcd_cluster.endpoints)
    yield client
    client.close()


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/pfs-test-{secrets.token_hex(6)}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend's name; skips a test marked for the other backend."""
    name: str = request.param
    marker = request.node.get_closest_marker("backend")
    if marker is not None and marker.args[0] != name:
        pytest.skip(f"{marker.args[0]} only: {marker.kwargs['reason']}")
    return name


@pytest.fixture
def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], MetadataStore]]:
    """Opens a store of this test's backend as seen by node ``node_id`` (SQLite has one
    node: every call opens the same file)."""
    opened: list[MetadataStore] = []
    prefix = request.getfixturevalue("etcd_prefix") if backend == "etcd" else ""

    def make(node_id: str = NODE) -> MetadataStore:
        store: MetadataStore
        if backend == "etcd":
            client: EtcdClient = request.getfixturevalue("etcd_client")
            store = EtcdStore(client, node_id, prefix)
        else:
            store = SqliteStore(tmp_path / "meta.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[str], MetadataStore]) -> MetadataStore:
    """This test's store, seen by node ``NODE``."""
    return make_store(NODE)
