"""The last failed commit of each branch, so that nothing stays silently uncommitted.

When the commit of a last unmount fails (the pool is full, say), Docker never repeats
the Unmount: the changes stay in the working copy and the next commit of the branch
takes them. Until then the failure is shown on ``pfs repo inspect`` and on the volume's
Docker status, from here.

Each error is kept in this process's memory and, when the store can be written, as a
document of kind ``commit_error`` named ``REPO/BRANCH`` (so it survives a restart). On a
full pool the store may not take it: it is then kept in memory only, and lost at a
restart; the working copy's generation still tells that changes are uncommitted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pfs_volume.errors import PfsError
from pfs_volume.meta import MetadataStore, rfc3339

log = logging.getLogger(__name__)

KIND = "commit_error"


@dataclass(frozen=True)
class CommitError:
    """A commit that failed: when, why, and the mount whose unmount asked for it."""

    at: datetime
    message: str
    mount_id: str | None = None

    def as_json(self) -> dict[str, str | None]:
        """The error as the API and Docker's status show it."""
        return {"at": rfc3339(self.at), "message": self.message, "mount": self.mount_id}


class CommitErrors:
    """The last commit error of each branch. The store's documents are read once, on
    first use; after that this process's memory is the answer and the store follows it,
    so a commit that clears nothing costs no store round trip.

    Args:
        store: the metadata store (documents of kind ``commit_error``).
        clock: returns the current UTC time.
    """

    def __init__(self, store: MetadataStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self._memory: dict[tuple[str, str], CommitError] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def _load(self) -> None:
        """Bring the stored errors into memory, once (a failed read is tried again)."""
        if self._loaded:
            return
        try:
            documents = self.store.list_documents(KIND)
        except PfsError as exc:
            log.warning("stored commit errors unreadable for now: %s", exc)
            return
        for name, body, _version in documents:
            repo, _, branch = name.partition("/")
            data = json.loads(body)
            self._memory.setdefault(
                (repo, branch),
                CommitError(datetime.fromisoformat(data["at"]), data["message"], data.get("mount")),
            )
        self._loaded = True

    def record(self, repo: str, branch: str, message: str, mount_id: str | None) -> CommitError:
        """Remember that a commit of ``repo/branch`` failed with ``message``; the record.
        Never raises: a store that cannot take it leaves it in memory only (logged)."""
        error = CommitError(self.clock(), message, mount_id)
        body = json.dumps({"at": rfc3339(error.at), "message": message, "mount": mount_id})
        with self._lock:
            self._load()
            self._memory[(repo, branch)] = error
            try:
                found = self.store.get_document(KIND, f"{repo}/{branch}")
                self.store.put_document(KIND, f"{repo}/{branch}", body, found[1] if found else None)
            except PfsError as exc:
                log.warning(
                    "repo=%s branch=%s mount=%s commit error kept in memory only: %s",
                    repo,
                    branch,
                    mount_id,
                    exc,
                )
        return error

    def clear(self, repo: str, branch: str) -> None:
        """Forget the branch's commit error (it committed, or it is gone). Never raises:
        a stored one the store will not drop now is logged (memory forgets it anyway)."""
        with self._lock:
            self._load()
            if self._memory.pop((repo, branch), None) is None:
                return
            try:
                self.store.delete_document(KIND, f"{repo}/{branch}")
            except PfsError as exc:
                log.warning(
                    "repo=%s branch=%s stored commit error not cleared: %s", repo, branch, exc
                )

    def of_repo(self, repo: str) -> dict[str, CommitError]:
        """The commit errors of a repo's branches, by branch name."""
        with self._lock:
            self._load()
            return {b: e for (r, b), e in self._memory.items() if r == repo}

    def of_branch(self, repo: str, branch: str) -> CommitError | None:
        """The branch's commit error, or None."""
        return self.of_repo(repo).get(branch)
