"""Cluster options are checked before a node starts, with errors that say what to give."""

from __future__ import annotations

import pytest

from pfs_volume.config import Settings, parse_endpoints
from pfs_volume.errors import InvalidName, InvalidRequest

GOOD = {
    "etcd": ("http://127.0.0.1:2379",),
    "node_id": "a",
    "advertise": "http://127.0.0.2:7070",
    "cluster_token": "x" * 16,
}


def test_a_good_cluster_node() -> None:
    settings = Settings(**GOOD)  # type: ignore[arg-type]
    assert settings.cluster and settings.listen == ("127.0.0.2", 7070)
    assert not Settings().cluster


def test_endpoints_are_parsed_and_checked() -> None:
    assert parse_endpoints("http://a:1, http://b:2") == ("http://a:1", "http://b:2")
    assert parse_endpoints("") == ()
    with pytest.raises(InvalidRequest, match="http://HOST:PORT"):
        parse_endpoints("127.0.0.1:2379")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cluster_token": "short"}, "cluster-token"),
        ({"advertise": ""}, "--advertise"),
        ({"advertise": "http://h:99999"}, "--advertise"),
        ({"replicas": 0}, "--replicas"),
        ({"lease_ttl": 1}, "--lease-ttl"),
    ],
)
def test_bad_cluster_options_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Settings(**{**GOOD, **change})  # type: ignore[arg-type]


def test_a_bad_node_id_is_refused() -> None:
    with pytest.raises(InvalidName, match="node id"):
        Settings(**{**GOOD, "node_id": "a/b"})  # type: ignore[arg-type]
