"""etcd transactions as data: the compares and writes of one transaction, the keys and
values etcd answers with, and their JSON form on etcd's v3 gateway.

Keys are ``str`` (UTF-8), values ``bytes`` (``str`` values are UTF-8 encoded); both go
base64-encoded on the wire, as the gateway wants them. (``etcd3gw``'s own helpers encode
``str`` as Latin-1, which fails on other characters, so they are not used.) Pure: nothing
here sends anything.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

ETCD_MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the most compares, or success ops, or failure ops,
one transaction may hold."""
MAX_TXN_OPS = ETCD_MAX_TXN_OPS - 2
"""The most compares, or success ops, or failure ops, one ``EtcdClient.txn`` may hold:
etcd's limit less the two ops of the fence around it (``etcd_once``): the outer
transaction's op (etcd allows a nested transaction its parent's limit less the parent's
own op count) and the marker write in each branch."""


@dataclass(frozen=True)
class KeyValue:
    """One etcd key with its value and revisions (``lease`` 0: none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @property
    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode()


CompareTarget = Literal["VALUE", "CREATE", "MOD", "VERSION"]
CompareResult = Literal["EQUAL", "NOT_EQUAL", "GREATER", "LESS"]
_TARGET_FIELDS = {
    "VALUE": "value",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VERSION": "version",
}


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction, on a key or (with ``range_end``) on every key of
    a range; on an empty range it compares against an absent key (revisions 0)."""

    key: str
    target: CompareTarget
    operand: int | bytes
    result: CompareResult = "EQUAL"
    range_end: bytes | None = None

    def payload(self) -> dict[str, Any]:
        """The gateway's JSON form."""
        operand = b64(self.operand) if isinstance(self.operand, bytes) else self.operand
        body: dict[str, Any] = {
            "key": b64(self.key),
            "target": self.target,
            "result": self.result,
            _TARGET_FIELDS[self.target]: operand,
        }
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        return body


@dataclass(frozen=True)
class Op:
    """One write of a transaction: a put, or a delete of a key or a range."""

    kind: Literal["put", "delete"]
    key: str
    value: bytes = b""
    lease: int | None = None
    range_end: bytes | None = None

    def payload(self) -> dict[str, Any]:
        """The gateway's JSON form."""
        if self.kind == "put":
            put: dict[str, Any] = {"key": b64(self.key), "value": b64(self.value)}
            if self.lease:
                put["lease"] = self.lease
            return {"request_put": put}
        delete: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end is not None:
            delete["range_end"] = b64(self.range_end)
        return {"request_delete_range": delete}


def value_equals(key: str, value: str | bytes) -> Compare:
    """The key exists and holds ``value``."""
    return Compare(key, "VALUE", to_bytes(value))


def create_revision_equals(key: str, revision: int) -> Compare:
    """The key was created at ``revision`` (0: the key is absent)."""
    return Compare(key, "CREATE", revision)


def mod_revision_equals(key: str, revision: int) -> Compare:
    """The key was last written at ``revision`` (0: the key is absent)."""
    return Compare(key, "MOD", revision)


def version_equals(key: str, version: int) -> Compare:
    """The key has been written ``version`` times since it was created (0: absent)."""
    return Compare(key, "VERSION", version)


def key_exists(key: str) -> Compare:
    """The key exists (any value)."""
    return Compare(key, "CREATE", 0, "NOT_EQUAL")


def prefix_empty(prefix: str) -> Compare:
    """No key starts with ``prefix``."""
    return Compare(prefix, "CREATE", 0, range_end=prefix_end(prefix))


def put_op(key: str, value: str | bytes, lease: int | None = None) -> Op:
    """Write ``value`` to ``key``, bound to ``lease`` if given."""
    return Op("put", key, to_bytes(value), lease)


def delete_op(key: str) -> Op:
    """Delete ``key`` (nothing when it is absent)."""
    return Op("delete", key)


def delete_prefix_op(prefix: str) -> Op:
    """Delete every key that starts with ``prefix``."""
    return Op("delete", prefix, range_end=prefix_end(prefix))


def prefix_end(prefix: str) -> bytes:
    """The range end that makes [prefix, end) exactly the keys starting with ``prefix``:
    the prefix with its last byte below 0xff incremented (all keys when it has none)."""
    data = bytearray(prefix.encode())
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return b"\0"


def to_bytes(value: str | bytes) -> bytes:
    """A value as bytes (``str`` UTF-8 encoded)."""
    return value.encode() if isinstance(value, str) else value


def b64(data: str | bytes) -> str:
    """Bytes (or UTF-8 text) as the gateway's base64 text."""
    return base64.b64encode(to_bytes(data)).decode("ascii")


def key_value(item: dict[str, Any]) -> KeyValue:
    """A key of a gateway reply (``kvs`` item)."""
    return KeyValue(
        key=base64.b64decode(item["key"]).decode(),
        value=base64.b64decode(item.get("value", "")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        version=int(item.get("version", 0)),
        lease=int(item.get("lease", 0)),
    )
