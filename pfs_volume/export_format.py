"""The export file's metadata: written from records and checked before anything of an
import is kept. Pure: no pool, no store.

Format 2 (written now) adds to each commit entry its ``merge_parents``, ``provenance``
and ``job``, so that every field of a commit record survives the round trip; format 1
files (without them) are still read, their commits taken as having none. A pfs that
reads format 1 only refuses a format 2 file rather than dropping those fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pfs_volume import strict_json
from pfs_volume.errors import InvalidRequest, PfsError
from pfs_volume.meta import CommitRecord
from pfs_volume.meta.codec import commit_fields, commit_from, pick
from pfs_volume.names import check_component

FORMAT = 2
READABLE = (1, 2)
COMMIT_ID = re.compile(r"[0-9a-f]{32}")
MAX_METADATA = 256 * 1024 * 1024
"""Bytes the metadata line may have."""
MAX_JOB = 256
"""Characters a job id may have (pfs makes ~28)."""
DAMAGED = "the export file is damaged"
ENTRY_FIELDS = (
    *("id", "parent", "merge_parents", "branch", "created", "message", "origin"),
    *("provenance", "job"),
)
"""The record codec's commit fields each commit entry holds, in order (then ``stream``
and ``base``)."""


def commit_entry(commit: CommitRecord, stream: bool, base: str | None) -> dict[str, Any]:
    """A commit as its export entry; ``stream`` says whether its snapshot follows,
    ``base`` which earlier commit that stream is incremental against."""
    return {**pick(commit_fields(commit), ENTRY_FIELDS), "stream": stream, "base": base}


def commit_record(entry: dict[str, Any], repo: str, holders: tuple[str, ...]) -> CommitRecord:
    """The commit record of a checked entry (see ``check_metadata``), in repo ``repo``."""
    fields = pick(entry, ENTRY_FIELDS)
    kept = entry["stream"]
    return commit_from({**fields, "pruned": not kept, "holders": holders if kept else ()}, repo)


def parents_first(commits: Iterable[CommitRecord]) -> list[CommitRecord]:
    """Commits ordered so that each comes after every one of its parents (first and
    merged-in), otherwise oldest first. Parents not among ``commits`` are ignored."""
    by_id = {c.id: c for c in commits}
    done: set[str] = set()
    ordered: list[CommitRecord] = []
    for start in sorted(by_id.values(), key=lambda c: (c.created, c.id)):
        # Depth first without recursion: a history may be longer than Python's stack.
        stack: list[tuple[CommitRecord, bool]] = [(start, False)]
        entered: set[str] = set()
        while stack:
            commit, expanded = stack.pop()
            if commit.id in done:
                continue
            if expanded:
                done.add(commit.id)
                ordered.append(commit)
                continue
            entered.add(commit.id)
            stack.append((commit, True))
            for parent in reversed(commit.parents):
                if parent in by_id and parent not in done and parent not in entered:
                    stack.append((by_id[parent], False))
    return ordered


def check_metadata(line: bytes) -> dict[str, Any]:
    """The metadata line of an export file, parsed and checked; format 1 entries get the
    fields format 2 added (none of each).

    Raises:
        InvalidRequest: it is cut short, not JSON, of a format this pfs does not read, or
            inconsistent (a parent or base that is not an earlier commit of the file, a
            malformed id, name, time, provenance or job; a lone surrogate, a key twice,
            nesting too deep: see ``strict_json``).
    """
    if not line.endswith(b"\n"):
        raise InvalidRequest(f"{DAMAGED}: its metadata line is cut short or too long")
    try:
        metadata = strict_json.loads(line, "its metadata", MAX_METADATA)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{DAMAGED}: {exc}") from None
    if not isinstance(metadata, dict) or "format" not in metadata:
        raise InvalidRequest(f"{DAMAGED}: its metadata is not a JSON object with a format")
    version = metadata["format"]
    if isinstance(version, bool) or version not in READABLE:
        raise InvalidRequest(
            f"the export file is of format {version!r}; this pfs reads formats "
            f"{', '.join(map(str, READABLE))} (was it made by a newer pfs?)"
        )
    try:
        _check(metadata, version)
    except KeyError as exc:
        raise InvalidRequest(f"{DAMAGED}: its metadata lacks the field {exc}") from None
    except (ValueError, TypeError, AttributeError, PfsError) as exc:
        raise InvalidRequest(f"{DAMAGED}: its metadata is inconsistent ({exc})") from None
    return metadata


def _check(metadata: dict[str, Any], version: int) -> None:
    check_component(metadata["repo"]["name"], "repo")
    datetime.fromisoformat(metadata["repo"]["created"])
    _require(isinstance(metadata["repo"]["description"], str), "the description is no string")
    ids: set[str] = set()
    for entry in metadata["commits"]:
        if version == 1:
            entry.update({"merge_parents": [], "provenance": [], "job": None})
        _check_commit(entry, ids)
        ids.add(entry["id"])
    names = set()
    for branch in metadata["branches"]:
        check_component(branch["name"], "branch")
        _require(branch["name"] not in names, f"branch {branch['name']} is listed twice")
        names.add(branch["name"])
        _require(branch["head"] is None or branch["head"] in ids, "a head is no commit")
        datetime.fromisoformat(branch["created"])


def _check_commit(entry: dict[str, Any], earlier: set[str]) -> None:
    commit_id = entry["id"]
    _require(
        isinstance(commit_id, str) and COMMIT_ID.fullmatch(commit_id) is not None,
        f"{commit_id!r} is not a commit id (32 lowercase hex digits)",
    )
    _require(commit_id not in earlier, f"commit {commit_id} is listed twice")
    _require(
        isinstance(entry["merge_parents"], list)
        and (entry["parent"] is not None or not entry["merge_parents"]),
        f"commit {commit_id}: merge_parents must be a list, and only with a parent",
    )
    parents = [entry["parent"], *entry["merge_parents"]] if entry["parent"] else []
    _require(
        all(p in earlier for p in parents) and len(set(parents)) == len(parents),
        f"commit {commit_id}: every parent must be a distinct commit listed before it",
    )
    _require(
        entry["base"] is None or (entry["stream"] is True and entry["base"] in earlier),
        f"commit {commit_id}: its stream's base must be a commit listed before it",
    )
    _require(isinstance(entry["stream"], bool), f"commit {commit_id}: stream must be a bool")
    for key in ("branch", "message", "origin"):
        _require(isinstance(entry[key], str), f"commit {commit_id}: {key} must be a string")
    datetime.fromisoformat(entry["created"])
    _require(isinstance(entry["provenance"], list), f"commit {commit_id}: provenance is no list")
    for item in entry["provenance"]:
        _check_provenance(commit_id, item)
    job = entry["job"]
    _require(
        job is None or (isinstance(job, str) and 0 < len(job) <= MAX_JOB),
        f"commit {commit_id}: job must be null or a string of 1 to {MAX_JOB} characters",
    )


def _check_provenance(commit_id: str, item: Any) -> None:
    repo, at, source = item.partition("@") if isinstance(item, str) else ("", "", "")
    _require(
        bool(at) and COMMIT_ID.fullmatch(source) is not None,
        f"commit {commit_id}: provenance entries are strings REPO@ID (ID 32 hex digits), "
        f"not {item!r}",
    )
    check_component(repo, "repo")


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)
