"""``pfs doctor``: stuck or suspicious state, each with the command that fixes it.

Nothing here changes anything: it reads the mount records, the engine's containers (via
the reconciler), the branches' working copies and what the daemon noticed at start-up,
and says in plain words what is wrong and what to run. The checks:

* mount records no container holds (``pfs mount release ID``), and whether they can be
  reconciled at all (engine unreachable, reconciliation off);
* mount records and volumes made under another driver name than the one served now;
* working copies that hold changes no commit holds while nothing has them mounted
  (``pfs commit REPO/BRANCH``), and branches whose last auto-commit failed;
* the pool's space: its reserve released (the pool was full), or little room left;
  snapshots of pruned commits, and data of deleted repos, still waiting to be deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pfs_volume.errors import PfsError, Unavailable
from pfs_volume.mount_reconciler import MountReconciler
from pfs_volume.names import check_component
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService

log = logging.getLogger(__name__)

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Finding:
    """One thing ``pfs doctor`` reports.

    Attributes:
        severity: ``error`` (data is at risk or a verb fails), ``warning`` (something is
            stuck or will surprise), ``note`` (worth knowing).
        what: what is wrong, in plain words.
        fix: the command (or step) that fixes it; "" when nothing needs doing.
    """

    severity: str
    what: str
    fix: str = ""


class Doctor:
    """Examines a node.

    Args:
        repos, volumes: the node's services.
        reconciler: the mount reconciler, or None when reconciliation is off.
        driver_name: the driver name served now; ``driver_before`` the one the pool was
            served under before, when it was another.
        extra: more checks (the pool's space keeper), each returning findings.
    """

    def __init__(
        self,
        repos: RepoService,
        volumes: VolumeService,
        reconciler: MountReconciler | None,
        driver_name: str,
        driver_before: str | None = None,
        extra: Sequence[Callable[[], list[Finding]]] = (),
    ) -> None:
        self.repos = repos
        self.volumes = volumes
        self.reconciler = reconciler
        self.driver_name = driver_name
        self.driver_before = driver_before
        self.extra = list(extra)

    def examine(self) -> list[Finding]:
        """Every finding, errors first."""
        found = [
            *self._space(),
            *self._driver(),
            *self._mounts(),
            *self._working_copies(),
        ]
        for check in self.extra:
            found.extend(check())
        order = {ERROR: 0, WARNING: 1, NOTE: 2}
        return sorted(found, key=lambda f: order[f.severity])

    def _driver(self) -> list[Finding]:
        found = []
        if self.driver_before is not None:
            found.append(
                Finding(
                    WARNING,
                    f"this pool was served as Docker driver {self.driver_before!r} before "
                    f"this start and is served as {self.driver_name!r} now: volumes and "
                    f"containers Docker knows under {self.driver_before!r} reach no plugin",
                    f"restart pfs with --driver-name {self.driver_before} to keep the old "
                    "name, or use the new name in docker run -v and docker volume commands",
                )
            )
        prefix = self.driver_name + "/"
        other = sorted(
            v.name
            for v in self.volumes.store.list_volumes()
            if "/" in v.name and not v.name.startswith(prefix) and _is_prefixed(v.name)
        )
        if other:
            shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
            found.append(
                Finding(
                    NOTE,
                    f"{len(other)} volume name(s) were made under another driver name than "
                    f"{self.driver_name!r}: {shown}",
                    "docker volume rm them under their old driver once no container uses "
                    "them (repo data is kept)",
                )
            )
        return found

    def _mounts(self) -> list[Finding]:
        records = list(self.volumes.mounts())
        prefix = self.driver_name + "/"
        other = [r for r in records if _is_prefixed(r.volume) and not r.volume.startswith(prefix)]
        if self.reconciler is None:
            found = [
                Finding(
                    WARNING,
                    f"mount {record.id} of {record.volume} was made under another driver "
                    f"name than {self.driver_name!r}; Docker's Unmount for it never "
                    "comes here",
                    "once its container is gone: pfs mount release " + record.id,
                )
                for record in other
            ]
            if records:
                found.append(
                    Finding(
                        NOTE,
                        f"{len(records)} mount record(s), and reconciliation with the engine "
                        "is off (--reconcile-interval 0): a record whose Unmount never comes "
                        "stays until released by hand",
                        "pfs mount release ID for each whose container is gone (pfs mount "
                        "list shows them)",
                    )
                )
            return found
        try:
            stale = self.reconciler.stale()
        except Unavailable as exc:
            return [
                Finding(
                    WARNING,
                    f"mount records cannot be checked against the Docker engine: {exc}",
                    "start pfs with --docker-host set to the engine that uses this plugin "
                    "(or --reconcile-interval 0 where no engine is)",
                )
            ]
        stale_ids = {record.id for record in stale}
        # A record of the old name that a container holds must not be released by hand:
        # its container still writes, and no Unmount will ever commit what it writes
        # after. Reconciliation releases it, committing, once the container stops.
        found = [
            Finding(
                WARNING,
                f"mount {record.id} of {record.volume} was made under another driver name "
                f"than {self.driver_name!r} and is held by a container: Docker's Unmount for "
                "it never comes here, so its writes are committed only once no container "
                "holds it (reconciliation releases it then)",
                f"stop the containers using {record.volume} to commit now; do not release "
                "the mount while they write",
            )
            for record in other
            if record.id not in stale_ids
        ]
        for record in stale:
            target = (
                f"{record.repo}/{record.branch}"
                if record.branch
                else f"{record.repo}@{record.commit}"
            )
            found.append(
                Finding(
                    WARNING,
                    f"mount {record.id} of {record.volume} ({target}) is held by no container; "
                    f"the next reconciliation pass (every {self.reconciler.interval:g} s) "
                    "releases it" + (", committing what changed" if record.branch else ""),
                    f"pfs mount release {record.id}",
                )
            )
        return found

    def _working_copies(self) -> list[Finding]:
        found = []
        mounted = {(m.repo, m.branch) for m in self.volumes.mounts() if m.branch}
        for repo in self.repos.list_repos():
            failures = self.repos.commit_errors_of(repo.name)
            for branch in self.repos.list_branches(repo.name):
                where = f"{repo.name}/{branch.name}"
                failed = failures.get(branch.name)
                if failed is not None:
                    found.append(
                        Finding(
                            ERROR,
                            f"the last auto-commit of {where} failed ("
                            f"{failed.at.strftime('%Y-%m-%d %H:%M:%S')} UTC, mount "
                            f"{failed.mount_id}): {failed.message}; what the container wrote "
                            "stays in the working copy",
                            f"once the cause is gone (a full pool: pfs gc, pfs repo delete, "
                            f"pfs branch delete): pfs commit {where}, or the branch's next "
                            "Unmount commits it",
                        )
                    )
                    continue
                if (repo.name, branch.name) in mounted:
                    continue
                try:
                    dirty = self.repos.has_uncommitted_changes(repo.name, branch.name)
                except PfsError as exc:
                    log.info("doctor: %s not checked: %s", where, exc)
                    continue
                if dirty:
                    found.append(
                        Finding(
                            WARNING,
                            f"the working copy of {where} holds changes no commit holds, "
                            "and no container has it mounted: put, rm, reset and merge "
                            "refuse the branch until they are committed",
                            f"pfs commit {where}",
                        )
                    )
        return found

    def _space(self) -> list[Finding]:
        found = []
        free, total = self.repos.pool_space()
        space = self.repos.reserve()
        frees = "pfs gc REPO --keep-last N, pfs repo delete REPO or pfs branch delete REPO/BRANCH"
        if space.kept and not space.held:
            found.append(
                Finding(
                    ERROR,
                    f"the pool is full: it has no reserve ({space.size} bytes, kept so "
                    "that pfs can free space: used up, or never room for it); "
                    f"{free} of {total} bytes are free, and commits, puts and new mounts "
                    "fail with 'the pool is full'",
                    f"{frees}; the reserve comes back once there is room",
                )
            )
        elif free < 2 * space.size:
            found.append(
                Finding(
                    WARNING,
                    f"the pool is nearly full: {free} of {total} bytes are free",
                    f"{frees}, or grow the pool",
                )
            )
        gone = sorted(self.repos.pending_repo_deletions())
        if gone:
            found.append(
                Finding(
                    NOTE,
                    f"{len(gone)} deleted repo(s) {', '.join(gone[:5])} still hold their data "
                    "on this pool while a peer reads it; it is deleted when that read ends",
                    "",
                )
            )
        pending = sorted(self.repos.pending_deletions())
        if pending:
            shown = ", ".join(f"{repo}@{commit[:12]}" for repo, commit in pending[:5])
            found.append(
                Finding(
                    NOTE,
                    f"{len(pending)} snapshot(s) of pruned commits wait to be deleted while "
                    f"an export or a peer reads them: {shown}",
                    "",
                )
            )
        return found


def _is_prefixed(name: str) -> bool:
    """True for a name of the ``DRIVER/...`` form (its first part a valid driver name)."""
    first = name.split("/", 1)[0]
    try:
        check_component(first, "driver")
    except PfsError:
        return False
    return first == first.lower()
