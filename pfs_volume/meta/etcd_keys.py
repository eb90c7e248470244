"""The etcd store's keys, where each record lives (the table is in ``meta/etcd.py``), and
the form of its values: compact JSON objects."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

from pfs_volume.errors import InvalidName
from pfs_volume.meta.codec import branch_from, commit_fields, pick, repo_fields
from pfs_volume.meta.etcd_client import KeyValue
from pfs_volume.meta.records import BranchRecord, CommitRecord, RepoRecord


def check_component(name: str, what: str) -> str:
    """A key component: it must not be empty or contain "/" (which would make one record
    look like a record of another repo or branch).

    Raises:
        InvalidName: it is empty or contains "/".
    """
    if not name or "/" in name:
        raise InvalidName(f"{what} {name!r} cannot be stored: it is empty or contains '/'")
    return name


def last_component(key: str) -> str:
    """The last component of a key, percent-decoded (a repo, branch, commit or name)."""
    return unquote(key.rsplit("/", 1)[-1])


def dump(value: dict[str, Any]) -> str:
    """A JSON object as the store writes it: compact."""
    return json.dumps(value, separators=(",", ":"))


def load(kv: KeyValue) -> dict[str, Any]:
    """The JSON object a key holds.

    Raises:
        ValueError: it holds something else.
    """
    value = json.loads(kv.value)
    if not isinstance(value, dict):
        raise ValueError(f"etcd key {kv.key} holds {kv.text!r}, not a JSON object")
    return value


class EtcdKeys:
    """The keys of one pfs cluster's records (under ``prefix``) as one node sees them
    (its own records under ``local/<node>/``).

    Raises:
        InvalidName: a node id, repo, branch or commit id that would break the layout.
    """

    def __init__(self, prefix: str, node_id: str) -> None:
        check_component(node_id, "node id")
        self.prefix = prefix
        self.local = f"{prefix}/local/{node_id}/"

    # the cluster's

    def repos(self) -> str:
        """The prefix of every repo record."""
        return f"{self.prefix}/repos/"

    def repo(self, repo: str) -> str:
        """A repo record."""
        return self.repos() + check_component(repo, "repo")

    def branches(self, repo: str) -> str:
        """The prefix of a repo's branch records."""
        return f"{self.prefix}/branches/{check_component(repo, 'repo')}/"

    def branch(self, repo: str, branch: str) -> str:
        """A branch record."""
        return self.branches(repo) + check_component(branch, "branch")

    def commits(self, repo: str) -> str:
        """The prefix of a repo's commit records."""
        return f"{self.prefix}/commits/{check_component(repo, 'repo')}/"

    def commit(self, repo: str, commit_id: str) -> str:
        """A commit record."""
        return self.commits(repo) + check_component(commit_id, "commit id")

    def log(self, repo: str) -> str:
        """The prefix of a repo's log index (``etcd_log``)."""
        return f"{self.prefix}/log/{check_component(repo, 'repo')}/"

    def size_total(self, repo: str) -> str:
        """A repo's base size total (``etcd_sizes``): what it was created or imported
        with; its presence says the repo's sizes are kept."""
        return f"{self.prefix}/sizes/{check_component(repo, 'repo')}"

    def size_shards(self, repo: str) -> str:
        """The prefix of a repo's per-branch size totals (``etcd_sizes``)."""
        return self.size_total(repo) + "/"

    def size_shard(self, repo: str, branch: str) -> str:
        """What commits recorded on ``branch`` added to the repo's size total."""
        return self.size_shards(repo) + check_component(branch, "branch")

    def commit_sizes(self, repo: str) -> str:
        """The prefix of a repo's commit sizes."""
        return f"{self.prefix}/commit_sizes/{check_component(repo, 'repo')}/"

    def commit_size(self, repo: str, commit_id: str) -> str:
        """A commit's size."""
        return self.commit_sizes(repo) + check_component(commit_id, "commit id")

    def claim(self, repo: str) -> str:
        """An import's claim on a repo name."""
        return f"{self.prefix}/imports/{check_component(repo, 'repo')}"

    def gone(self, repo: str) -> str:
        """Cluster-wide: the repo was deleted (removed when the name is created again)."""
        return f"{self.prefix}/gone/{check_component(repo, 'repo')}"

    def documents(self, kind: str) -> str:
        """The prefix of the documents of a kind."""
        return f"{self.prefix}/docs/{kind}/"

    def document(self, kind: str, name: str) -> str:
        """A document (name percent-encoded)."""
        return self.documents(kind) + quote(name, safe="")

    # this node's

    def working_copies(self, repo: str) -> str:
        """The prefix of this node's working copy states of a repo's branches."""
        return f"{self.local}wc/{check_component(repo, 'repo')}/"

    def working_copy(self, repo: str, branch: str) -> str:
        """This node's working copy state of a branch."""
        return self.working_copies(repo) + check_component(branch, "branch")

    def intents(self, repo: str | None = None) -> str:
        """The prefix of this node's commit intents, of one repo or all."""
        if repo is None:
            return f"{self.local}intents/"
        return f"{self.local}intents/{check_component(repo, 'repo')}/"

    def intent(self, commit: CommitRecord) -> str:
        """This node's intent of a commit."""
        return self.intents(commit.repo) + check_component(commit.id, "commit id")

    def mounts(self) -> str:
        """The prefix of this node's mount records."""
        return f"{self.local}mounts/"

    def mount(self, mount_id: str) -> str:
        """A mount record of this node (id percent-encoded)."""
        return self.mounts() + quote(mount_id, safe="")

    def volumes(self) -> str:
        """The prefix of the Docker volume names this node remembers."""
        return f"{self.local}volumes/"

    def volume(self, name: str) -> str:
        """A Docker volume name this node remembers (percent-encoded)."""
        return self.volumes() + quote(name, safe="")

    def tombstones(self) -> str:
        """The prefix of this node's tombstones."""
        return f"{self.local}deleted/"

    def tombstone(self, repo: str) -> str:
        """This node's tombstone of a deleted repo whose data may still be here."""
        return self.tombstones() + check_component(repo, "repo")


REPO_VALUE = ("created", "description", "replicas", "placement")
BRANCH_VALUE = ("head", "created")
COMMIT_VALUE = (
    *("id", "branch", "parent", "created", "message", "origin", "pruned", "holders"),
    *("provenance", "job", "merge_parents"),
)
"""The codec's fields each value holds, in order (the key says the rest)."""


# values: the codec's fields (meta/codec.py) less what the key says


def repo_json(repo: RepoRecord) -> str:
    """A repo record's value."""
    return dump(pick(repo_fields(repo), REPO_VALUE))


def commit_json(commit: CommitRecord) -> str:
    """A commit record's value."""
    return dump(pick(commit_fields(commit), COMMIT_VALUE))


def working_copy_json(generation: int | None, base: str | None) -> str:
    """This node's working copy state of a branch (``clean_generation`` and
    ``working_base`` of its BranchRecord)."""
    return dump({"generation": generation, "base": base})


def branch_of(repo: str, name: str, kv: KeyValue, wc: KeyValue | None) -> BranchRecord:
    """A branch record from its value and this node's working copy state of it."""
    state = load(wc) if wc is not None else {}
    fields = {
        **load(kv),
        "clean_generation": state.get("generation"),
        "working_base": state.get("base"),
    }
    return branch_from(fields, repo, name)
