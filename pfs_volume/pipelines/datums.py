"""Datums: the units of work a job splits its input commits into (pure logic).

Each input's glob picks datum paths out of its commit (``/`` the whole input, ``/*``
each top-level file or folder; see ``pfs_volume.pipelines.spec`` for the grammar). The
inputs' datums then combine: a ``cross`` makes one datum of every combination (none
when any input has none), a ``union`` takes each input's datums on their own.

A datum's ``id`` hashes the pipeline's fingerprint with the datum's parts, so the same
paths under the same transform get the same id in every job. A new job reruns only the
datums whose paths changed since the previous job (``affected``, from the commits'
diff) or that the previous job did not have, and reuses the other outputs (``plan``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pfs_volume.errors import TooManyDatums
from pfs_volume.pipelines.spec import PipelineSpec, fingerprint, split_glob

WHOLE_INPUT = ""
"""The datum path of glob ``/``: the input's root."""

_NOT_NAMES = ("", ".", "..")
MAX_DATUMS = 100_000
"""Datums one job may have. A cross multiplies its inputs' datums (16 inputs of 100
files each: 100**16), so the count is checked before any datum is made."""


@dataclass(frozen=True)
class Datum:
    """One unit of work: a path in each input it draws on.

    Attributes:
        parts: ``(input name, path)`` pairs, the path relative to the input's root
            (``""`` for the whole input); one pair per input of a cross, one in all for
            a union.
        fingerprint: the pipeline's ``spec.fingerprint``.
        id: 64 hex digits, the same for the same parts and fingerprint.
    """

    parts: tuple[tuple[str, str], ...]
    fingerprint: str
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        text = json.dumps([self.fingerprint, [list(part) for part in self.parts]])
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        object.__setattr__(self, "id", digest)


def match(glob: str, entries: Iterable[str]) -> list[str]:
    """The datum paths a glob picks from an input commit.

    Args:
        glob: a glob as ``spec`` accepts it.
        entries: paths relative to the input's root (``"a"``, ``"a/b"``), files and
            folders. A folder need not be listed for a path under it to imply it.
            Entries with an empty, ``.`` or ``..`` component never match.
    Returns:
        The matching paths at the glob's depth, sorted, without duplicates; ``[""]``
        for ``/`` (whatever the input holds, even nothing).
    Raises:
        InvalidRequest: for a malformed glob.
    """
    segments = split_glob(glob)
    if not segments:
        return [WHOLE_INPUT]
    depth = len(segments)
    matchers = [_segment_matcher(segment) for segment in segments]
    found: set[str] = set()
    for entry in entries:
        names = entry.split("/")
        if len(names) < depth or any(name in _NOT_NAMES for name in names):
            continue
        head = names[:depth]
        if all(matches(name) for matches, name in zip(matchers, head, strict=True)):
            found.add("/".join(head))
    return sorted(found)


def datums(spec: PipelineSpec, entries_by_input: Mapping[str, Iterable[str]]) -> list[Datum]:
    """Every datum of a job, in a stable order.

    Args:
        spec: the pipeline.
        entries_by_input: for each input (by its ``name``), the paths of its commit,
            as ``match`` takes them.
    Returns:
        For a cross, every combination of the inputs' datums (inputs in spec order,
        the last varying fastest; none if an input has no datum); for a union, each
        input's datums in spec order.
    Raises:
        ValueError: when ``entries_by_input`` lacks an input or names one the spec has not.
        TooManyDatums: there would be more than ``MAX_DATUMS`` (counted, none made).
    """
    names = [i.name for i in spec.inputs]
    missing = [name for name in names if name not in entries_by_input]
    unknown = sorted(set(entries_by_input) - set(names))
    if missing or unknown:
        raise ValueError(f"entries given for inputs {unknown}, missing for inputs {missing}")
    spec_print = fingerprint(spec)
    matched = [
        [(i.name, path) for path in match(i.glob, entries_by_input[i.name])] for i in spec.inputs
    ]
    counts = [len(parts) for parts in matched]
    total = sum(counts) if spec.combine == "union" else math.prod(counts)
    if total > MAX_DATUMS:
        shown = " + " if spec.combine == "union" else " x "
        raise TooManyDatums(
            f"the inputs make {total} datums ({spec.combine} of "
            f"{shown.join(str(n) for n in counts)}); a job may have at most {MAX_DATUMS}: "
            "use coarser globs (fewer, bigger datums) or fewer crossed inputs"
        )
    if spec.combine == "union":
        return [Datum((part,), spec_print) for parts in matched for part in parts]
    return [Datum(combination, spec_print) for combination in itertools.product(*matched)]


def affected(datum_paths: Iterable[str], changed_paths: Iterable[str]) -> set[str]:
    """Which of one input's datum paths a change to that input touches.

    A datum is affected when a changed path is the datum's path, lies under it (a
    change at ``a/b/c`` affects datums ``a`` and ``a/b``) or lies above it (a change at
    ``a``, such as a deleted or renamed folder, affects every datum under ``a``). The
    whole-input datum ``""`` is affected by any change, and a changed path ``""``
    (the root) affects every datum.

    Args:
        datum_paths: the input's datum paths (from ``match``).
        changed_paths: the paths the input's diff reports; for a rename, give both the
            old and the new path.
    Returns:
        The affected datum paths.
    """
    changed = {_clean(path) for path in changed_paths}
    if not changed:
        return set()
    if WHOLE_INPUT in changed:
        return set(datum_paths)
    at_or_above_change: set[str] = set()
    for path in changed:
        names = path.split("/")
        at_or_above_change.update("/".join(names[:k]) for k in range(1, len(names) + 1))
    hit: set[str] = set()
    for datum in datum_paths:
        if datum == WHOLE_INPUT or datum in at_or_above_change:
            hit.add(datum)
            continue
        names = datum.split("/")
        if any("/".join(names[:k]) in changed for k in range(1, len(names))):
            hit.add(datum)
    return hit


def dirty_datums(
    current: Iterable[Datum], changed_by_input: Mapping[str, Iterable[str]]
) -> set[Datum]:
    """The datums with at least one part that a change affects (see ``affected``).

    Args:
        current: this job's datums.
        changed_by_input: each input's changed paths (an input left out did not change;
            ``{""}`` means everything changed).
    Returns:
        The dirty datums.
    """
    listed = list(current)
    paths_by_input: dict[str, set[str]] = {}
    for datum in listed:
        for name, path in datum.parts:
            paths_by_input.setdefault(name, set()).add(path)
    hit = {
        name: affected(paths, changed_by_input.get(name, ()))
        for name, paths in paths_by_input.items()
    }
    return {d for d in listed if any(path in hit[name] for name, path in d.parts)}


def plan(
    previous: Mapping[str, str] | None, current: list[Datum], dirty: set[Datum]
) -> tuple[list[Datum], dict[Datum, str]]:
    """Split a job's datums into those to run and those whose output can be reused.

    Args:
        previous: the previous job's datum ids, each with a reference to its output;
            None when there was no previous job (or its outputs must not be used).
        current: this job's datums, in order.
        dirty: the datums whose input paths changed since the previous job.
    Returns:
        ``(to_run, to_reuse)``: the datums to run, in ``current``'s order, and each
        reused datum with its previous output reference. A datum is reused only when it
        is clean and the previous job had it (same id: same paths, same fingerprint).
    """
    to_run: list[Datum] = []
    to_reuse: dict[Datum, str] = {}
    for datum in current:
        output = None if previous is None or datum in dirty else previous.get(datum.id)
        if output is None:
            to_run.append(datum)
        else:
            to_reuse[datum] = output
    return to_run, to_reuse


def _segment_matcher(segment: str) -> Callable[[str], bool]:
    """A case-sensitive ``fnmatch`` test for one path component."""
    pattern = re.compile(fnmatch.translate(segment))
    return lambda name: pattern.match(name) is not None


def _clean(path: str) -> str:
    """A changed path as ``affected`` compares it: no leading ``./``, ``/`` or trailing ``/``."""
    path = path.removeprefix("./") if path != "." else ""
    return path.strip("/")
