"""This node's commit intents, Docker mounts and volume names in etcd
(``local/<node>/intents/``, ``mounts/`` and ``volumes/``, see the keyspace table in
``meta/etcd.py``): the part of the etcd store that describes one node's commits in
flight and its Docker. (Its working copy state goes with the branches, in ``etcd``.)"""

from __future__ import annotations

from dataclasses import replace

from pfs_volume.errors import Busy
from pfs_volume.meta.codec import (
    intent_fields,
    intent_from,
    mount_fields,
    mount_from,
    volume_fields,
    volume_from,
)
from pfs_volume.meta.etcd_cas import CAS_ATTEMPTS, guarded_write, read_modify_write
from pfs_volume.meta.etcd_client import EtcdClient, KeyValue, put_op
from pfs_volume.meta.etcd_keys import EtcdKeys, dump, load
from pfs_volume.meta.records import CommitIntent, MountRecord, VolumeRecord


class EtcdNodeRecords:
    """The etcd store's methods for this node's commit intents, mounts and volume names
    (a part of ``EtcdStore``, which sets ``client`` and ``keys``; ``finish_commit``, which
    drops an intent with the commit, is the store's own)."""

    client: EtcdClient
    keys: EtcdKeys

    # commit intents

    def begin_commit(self, intent: CommitIntent) -> None:
        self.client.put(self.keys.intent(intent.commit), dump(intent_fields(intent)))

    def abandon_commit(self, intent: CommitIntent) -> None:
        self.client.delete(self.keys.intent(intent.commit))

    def list_intents(self) -> list[CommitIntent]:
        found = self.client.get_prefix(self.keys.intents())
        intents = [intent_from(load(kv)) for kv in found]
        intents.sort(key=lambda i: (i.commit.created, i.commit.id))
        return intents

    # mounts

    def add_mount(self, mount: MountRecord) -> MountRecord:
        key = self.keys.mount(mount.id)
        for _ in range(CAS_ATTEMPTS):
            if guarded_write(self.client, [put_op(key, _mount_json(mount))], absent=[key]):
                return mount
            found = self.client.get(key)
            if found is not None:
                return mount_of(found)
        raise Busy(f"the record of mount {mount.id} kept changing; try again")

    def get_mount(self, mount_id: str) -> MountRecord | None:
        found = self.client.get(self.keys.mount(mount_id))
        return mount_of(found) if found is not None else None

    def list_mounts(self, repo: str | None = None) -> list[MountRecord]:
        mounts = [
            m
            for m in (mount_of(kv) for kv in self.client.get_prefix(self.keys.mounts()))
            if repo is None or m.repo == repo
        ]
        mounts.sort(key=lambda m: (m.created, m.id))
        return mounts

    def delete_mount(self, mount_id: str) -> None:
        self.client.delete(self.keys.mount(mount_id))

    def use_mount(self, mount_id: str) -> MountRecord | None:
        return self._count_use(mount_id, +1)

    def unuse_mount(self, mount_id: str) -> bool:
        return self._count_use(mount_id, -1) is not None

    def _count_use(self, mount_id: str, step: int) -> MountRecord | None:
        """Add ``step`` to a mount's uses, never below one; the updated record, or None
        when it is unknown or (``step`` < 0) used once."""

        def change(found: KeyValue | None) -> tuple[str | None, MountRecord | None]:
            if found is None:
                return None, None
            mount = mount_of(found)
            if mount.uses + step < 1:
                return None, None
            updated = replace(mount, uses=mount.uses + step)
            return _mount_json(updated), updated

        busy = f"the record of mount {mount_id} kept changing; try again"
        return read_modify_write(self.client, self.keys.mount(mount_id), change, busy)

    # Docker volume names

    def add_volume(self, volume: VolumeRecord) -> None:
        key = self.keys.volume(volume.name)
        guarded_write(self.client, [put_op(key, dump(volume_fields(volume)))], absent=[key])

    def get_volume(self, name: str) -> VolumeRecord | None:
        found = self.client.get(self.keys.volume(name))
        return volume_of(found) if found is not None else None

    def list_volumes(self) -> list[VolumeRecord]:
        volumes = [volume_of(kv) for kv in self.client.get_prefix(self.keys.volumes())]
        return sorted(volumes, key=lambda v: v.name)

    def delete_volume(self, name: str) -> None:
        self.client.delete(self.keys.volume(name))


def _mount_json(mount: MountRecord) -> str:
    return dump(mount_fields(mount))


def mount_of(kv: KeyValue) -> MountRecord:
    """The mount record a key holds."""
    return mount_from(load(kv))


def volume_of(kv: KeyValue) -> VolumeRecord:
    """The volume name record a key holds."""
    return volume_from(load(kv))
