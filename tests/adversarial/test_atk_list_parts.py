"""Attacks on List's kept answer brought up to date by part (959ea4a,
``volumes/kept_listing.py``): what a write costs List afterwards, and what the kept index
keeps. (Correctness held: List equalled ``volume_infos`` after every step of the attacks
listed in the report; the failures here are cost and memory.)

Run: .venv/bin/pytest -p no:randomly tests/adversarial/test_atk_list_parts.py
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from pfs_volume.meta import VolumeRecord
from pfs_volume.meta.change_log import BRANCH, COPY, Part
from pfs_volume.names import parse_volume_name
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService, kept_listing
from pfs_volume.volumes.kept_listing import KeptListing
from pfs_volume.volumes.listing import volume_infos
from tests.unit.test_kept_listing_scale import Names

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def listed(volumes: VolumeService) -> dict[str, str]:
    answer = {v.name: v.mountpoint for v in volumes.list()}
    whole = {v.name: v.mountpoint for v in volume_infos(volumes.repos, volumes.store, "pfs")}
    assert answer == whole
    return answer


def commit(repos: RepoService, repo: str, branch: str) -> None:
    path = repos.working_copy(repo, branch)
    (path / "data").write_text(secrets.token_hex(4))
    repos.commit_working_copy(repo, branch, "a step", "test")


# 1. One Create (or Remove) costs List a rebuild of the repo's whole readers index.


def _branch_reads(records: list[VolumeRecord]) -> tuple[list[str], list[frozenset[Part]]]:
    """``listing.mountpoints`` of ``r/<branch>`` names: each reads its own branch's
    record and working copy (as ``OnceReads`` notes them)."""
    reads = []
    for record in records:
        branch = record.name.rsplit("/", 1)[-1]
        reads.append(frozenset({("r", BRANCH, branch), ("r", COPY, branch)}))
    return [f"/pool/{r.name}" for r in records], reads


def test_one_create_costs_a_rebuild_of_its_repos_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 volumes of one repo (a branch each). One more Create, then List: one name
    is resolved, but ``_update`` rebuilds ``readers`` of all 10,000 (``read_again`` holds
    every repo of a touched name), 10,000 x parts frozenset work on every such List:
    measured 166 to 567 ms a List on this machine, against 20 to 40 ms before 959ea4a;
    as much as the whole listing the kept answer is there to save."""
    store = Names()
    listing = KeptListing(
        store,  # type: ignore[arg-type]
        _branch_reads,
        lambda name: parse_volume_name(name, "pfs"),
        lambda since: (0, []),
        lambda paths: (frozenset(), frozenset()),
    )
    store.add(f"r/b{k}" for k in range(10_000))
    listing.answer()
    scanned: list[int] = []
    real = kept_listing._Moves.note

    def counting(
        moves: kept_listing._Moves, name: str, before: frozenset[Part], after: frozenset[Part]
    ) -> None:
        scanned.append(1)  # one name's reads looked at
        real(moves, name, before, after)

    monkeypatch.setattr(kept_listing._Moves, "note", counting)
    store.add(["r/new"])
    listing.answer()
    assert listing.last.resolved == 1
    assert sum(scanned) <= 10, f"one Create rescanned {sum(scanned)} names' reads"


# 2. A ref that is neither a branch nor a commit prefix reads "anything" of its repo.


# ``volumes``: tests/conftest.py's (SQLite on a fresh pool, wired as the daemon wires it).


def test_a_name_of_no_branch_is_worked_out_again_after_every_write(
    volumes: VolumeService,
) -> None:
    """``r@nope`` (no branch nope; not hex, so no commit prefix either) means nothing
    whatever is committed: only creating branch ``nope`` can change it. But
    ``OnceReads.resolve_commit`` hands every ref that is not a branch or a commit prefix
    to ``RepoService.resolve_commit`` as a walk and notes ``ANY``: the name is worked
    out again after every write to the repo (so are ``r@HEAD``, ``r@v1.0``, ``r@abc``
    and ``r@dev`` before dev exists). A commit on dev must re-resolve r/dev only."""
    repos = volumes.repos
    volumes.create("r", {})
    volumes.create("r/dev", {})
    commit(repos, "r", "dev")
    for name in ("r@nope", "r@HEAD", "r@v1.0"):
        volumes.store.add_volume(VolumeRecord(name, "r", WHEN))
    before = listed(volumes)
    assert before["r@nope"] == "" and before["r/dev"]
    commit(repos, "r", "dev")
    assert listed(volumes) == before
    assert volumes.listing.last.resolved == 1, (
        f"{volumes.listing.last.resolved} names worked out again after a commit on dev"
    )


# 3. The kept index keeps an entry for every repo ever named, named or not.


def test_the_kept_index_forgets_repos_no_name_names(volumes: VolumeService) -> None:
    """A volume per CI job (``ci-<n>``), removed and its repo deleted after the job,
    List between: ``_update`` leaves ``by_repo[repo] = ()`` and ``readers[repo] = {}``
    for every repo ever touched (only a whole listing forgets them, and on a node with
    frequent Lists one almost never comes): memory grows with every job, for ever."""
    volumes.create("keep", {})
    listed(volumes)
    for job in range(30):
        name = f"ci-{job}"
        volumes.create(name, {})
        listed(volumes)
        volumes.remove(name)
        volumes.repos.delete_repo(name)
        listed(volumes)
    kept = volumes.listing._kept
    assert kept is not None
    assert not volumes.listing.last.whole
    assert len(kept.by_repo) <= 2, f"by_repo keeps {len(kept.by_repo)} repos"
    assert len(kept.readers) <= 2, f"readers keeps {len(kept.readers)} repos"


# 4. A write of more parts than the change log keeps costs a whole listing.


def test_a_write_of_many_commits_is_not_a_whole_listing(volumes: VolumeService) -> None:
    """gc pruning (or a repo deleted, or imported, with) more commits than
    ``change_log.NAMES_KEPT`` (100,000) between two Lists: each row notes a part of its
    own, the log forgets the first of them, and ``since`` answers "anything": List works
    every volume of every repo out again. Before 959ea4a the same write noted one repo.
    Shown with the log's limit at 10 (its default is 100,000) and 12 commits pruned."""
    repos = volumes.repos
    volumes.create("r", {})
    volumes.create("other", {})
    for _ in range(13):
        commit(repos, "r", "master")
        listed(volumes)
    volumes.store._log.limit = 10  # type: ignore[attr-defined]
    listed(volumes)
    head = repos.get_branch("r", "master").head
    old = [c.id for c in repos.list_commits("r") if c.id != head]
    assert len(old) == 12
    volumes.store.mark_pruned("r", old)
    listed(volumes)
    assert not volumes.listing.last.whole, "pruning one repo's commits listed every repo"


# What held (kept here as guards).


def test_import_and_recreate_keep_list_whole(volumes: VolumeService) -> None:
    """Names remembered before their repo exists (``r2``, ``r2@<id>``, a prefix of it,
    a walk), then the repo imported under that name (its snapshots renamed into place
    uncounted, then its records); then deleted and made again empty."""
    import io

    from pfs_volume.transfer import export_repo, import_repo

    repos = volumes.repos
    volumes.create("r", {})
    commit(repos, "r", "master")
    commit(repos, "r", "master")
    head = repos.get_branch("r", "master").head
    assert head is not None
    names = ["r2", f"r2@{head}", f"r2@{head[:7]}", "r2@master~1", "r2/dev", f"pfs/r2@{head[:6]}"]
    for name in names:
        volumes.store.add_volume(VolumeRecord(name, "r2", WHEN))
    before = listed(volumes)
    assert all(before[n] == "" for n in names)
    import_repo(repos, io.BytesIO(b"".join(export_repo(repos, "r"))), "r2")
    after = listed(volumes)
    assert after[f"r2@{head}"] and after[f"r2@{head[:7]}"] and after["r2@master~1"]
    repos.delete_repo("r2")
    assert all(v == "" for k, v in listed(volumes).items() if k.startswith(("r2", "pfs/r2")))
    volumes.create("r2", {})
    listed(volumes)
