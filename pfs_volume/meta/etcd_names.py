"""Taking a repo name in etcd: a create or import in one transaction, or an import too
large for one under a claim on the name (see ``RepoNames.import_in_batches``)."""

from __future__ import annotations

import logging
import secrets
import time

from pfs_volume.errors import Conflict, Unavailable
from pfs_volume.meta import errors
from pfs_volume.meta.etcd_cas import guarded_write
from pfs_volume.meta.etcd_client import (
    MAX_TXN_OPS,
    EtcdClient,
    Op,
    delete_op,
    delete_prefix_op,
    prefix_empty,
    put_op,
)
from pfs_volume.meta.etcd_keys import EtcdKeys, dump, load
from pfs_volume.meta.records import Fence, rfc3339, utcnow

log = logging.getLogger(__name__)

IMPORT_LEASE_TTL = 60
"""Seconds an import's claim on its repo name outlives a crashed importer."""


class RepoNames:
    """Creates repos, and imports them, under names nobody else holds.

    Args:
        client: the etcd client.
        keys: the store's keys.
        node_id: this node's id (named in an import's claim).
    """

    def __init__(self, client: EtcdClient, keys: EtcdKeys, node_id: str) -> None:
        self.client = client
        self.keys = keys
        self.node_id = node_id

    def _taken(self, repo: str) -> list[str]:
        """Keys that must be absent while the name is free: its repo record, an import in
        progress, a tombstone here."""
        return [self.keys.repo(repo), self.keys.claim(repo), self.keys.tombstone(repo)]

    def create(self, repo: str, ops: list[Op]) -> None:
        """Write ``ops`` in one transaction if the name is free and holds no leftovers.

        Raises:
            Conflict: the name is taken, being imported or deleted, or a race with
                another node's create lasted too long.
        """
        leftovers_free = [
            prefix_empty(self.keys.branches(repo)),
            prefix_empty(self.keys.commits(repo)),
        ]
        for _ in range(2):
            if guarded_write(self.client, ops, absent=self._taken(repo), also=leftovers_free):
                return
            self._raise_if_taken(repo)
            self._sweep(repo)
        raise Conflict(f"repo {repo!r} is being created by another node right now; try again")

    def _raise_if_taken(self, repo: str) -> None:
        found, claim, tombstone = self.client.get_many(self._taken(repo))
        if found is not None:
            raise errors.repo_exists(repo)
        if claim is not None:
            node = load(claim).get("node", "?")
            raise Conflict(f"repo {repo!r} is being imported (by node {node}) right now")
        if tombstone is not None:
            raise errors.repo_being_deleted(repo)

    def _sweep(self, repo: str) -> None:
        """Delete branch and commit records an interrupted import left under a name that
        has no repo record and no import in progress."""
        swept = guarded_write(
            self.client,
            [
                delete_prefix_op(self.keys.branches(repo)),
                delete_prefix_op(self.keys.commits(repo)),
                delete_prefix_op(self.keys.log(repo)),
            ],
            absent=self._taken(repo)[:2],
        )
        if swept:
            log.warning("repo=%s swept records an interrupted import left", repo)

    def import_in_batches(self, repo: str, repo_put: Op, records: list[Op]) -> None:
        """Write ``records`` (commits and branches) in several transactions under a claim
        on the name, then the repo record.

        The claim is a key bound to a lease, taken in a transaction that also checks the
        name is free and sweeps leftovers of an earlier interrupted import. The commit
        records then go in batches, each fenced by the claim's create revision; the last
        transaction writes the branches (those that fit) and the repo record and drops
        the claim. Until then no repo record exists, so the repo is invisible and its
        name taken; if the importer dies, its lease expires within
        ``IMPORT_LEASE_TTL`` and the next create or import of that name sweeps what it
        left.

        Raises:
            Conflict: the name is taken, or the claim was lost (nothing is visible).
        """
        lease = self.client.grant_lease(IMPORT_LEASE_TTL)
        try:
            token = secrets.token_hex(8)
            claim_key = self.keys.claim(repo)
            claim = {"node": self.node_id, "token": token, "started": rfc3339(utcnow())}
            taken = guarded_write(
                self.client,
                [
                    put_op(claim_key, dump(claim), lease),
                    delete_prefix_op(self.keys.branches(repo)),
                    delete_prefix_op(self.keys.commits(repo)),
                    delete_prefix_op(self.keys.log(repo)),
                ],
                absent=self._taken(repo),
            )
            if not taken:
                self._raise_if_taken(repo)
                raise Conflict(f"repo {repo!r} is being created by another node right now")
            mine = self.client.get(claim_key)
            if mine is None or load(mine).get("token") != token:
                raise Conflict(f"the import of repo {repo!r} lost its claim on the name")
            held = Fence(claim_key, mine.create_revision)
            # The last transaction also writes the repo record, drops the claim and clears
            # the name's "deleted" mark.
            split = max(0, len(records) - (MAX_TXN_OPS - 3))
            body, tail = records[:split], records[split:]
            renewed = time.monotonic()
            for start in range(0, len(body), MAX_TXN_OPS):
                if time.monotonic() - renewed > IMPORT_LEASE_TTL / 3:
                    self.client.refresh_lease(lease)
                    renewed = time.monotonic()
                if not guarded_write(self.client, body[start : start + MAX_TXN_OPS], fence=held):
                    raise Conflict(
                        f"the import of repo {repo!r} lost its claim on the name (its lease "
                        "expired, or the claim was removed); nothing of it is visible"
                    )
            done = guarded_write(
                self.client,
                [*tail, repo_put, delete_op(claim_key), delete_op(self.keys.gone(repo))],
                absent=[self.keys.repo(repo)],
                fence=held,
            )
            if not done:
                raise Conflict(f"the import of repo {repo!r} lost its claim on the name")
            batches = -(-len(body) // MAX_TXN_OPS) + 2
            log.info("repo=%s imported in %d transactions under a claim", repo, batches)
        finally:
            try:
                self.client.revoke_lease(lease)
            except Unavailable as exc:
                # LeaseLost cannot come here (a revoke of a lease that is gone already
                # succeeds), and any other failure only leaves the lease to expire.
                log.warning("repo=%s import lease not revoked (it expires): %s", repo, exc)
