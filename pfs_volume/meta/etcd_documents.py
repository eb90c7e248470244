"""Documents in etcd (``{prefix}/docs/<kind>/<name>``, see the keyspace table in
``meta/etcd.py``): JSON bodies the pipelines keep, versioned by etcd's key version."""

from __future__ import annotations

from urllib.parse import unquote

from pfs_volume.meta import errors
from pfs_volume.meta.etcd_cas import guarded_write
from pfs_volume.meta.etcd_client import Compare, EtcdClient, put_op, version_equals
from pfs_volume.meta.etcd_keys import EtcdKeys


class EtcdDocuments:
    """The etcd store's document methods (a part of ``EtcdStore``, which sets
    ``client`` and ``keys``)."""

    client: EtcdClient
    keys: EtcdKeys

    def put_document(self, kind: str, name: str, body: str, expected: int | None) -> int:
        key = self.keys.document(kind, name)
        absent = [key] if expected is None else []
        also: list[Compare] = [] if expected is None else [version_equals(key, expected)]
        if guarded_write(self.client, [put_op(key, body)], absent=absent, also=also):
            found = self.client.get(key)
            return found.version if found is not None else (expected or 0) + 1
        found = self.client.get(key)
        raise errors.document_moved(kind, name, found.version if found else None, expected)

    def get_document(self, kind: str, name: str) -> tuple[str, int] | None:
        found = self.client.get(self.keys.document(kind, name))
        return None if found is None else (found.value.decode(), found.version)

    def list_documents(self, kind: str) -> list[tuple[str, str, int]]:
        prefix = self.keys.documents(kind)
        return [
            (unquote(kv.key[len(prefix) :]), kv.value.decode(), kv.version)
            for kv in self.client.get_prefix(prefix)
        ]

    def delete_document(self, kind: str, name: str) -> None:
        self.client.delete(self.keys.document(kind, name))
