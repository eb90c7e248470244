"""The pipeline graph: who writes which branch, who reads it, and what lies downstream
(pure logic over specs).

Pipelines form a DAG through branches: a pipeline reads input branches and writes one
output branch, which other pipelines may read. Two pipelines never write one branch,
and no pipeline may feed itself through others (each would trigger the next for ever).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pfs_volume.pipelines.spec import PipelineSpec

Branch = tuple[str, str]
"""``(repo, branch)``."""


def writer_problems(
    name: str,
    output: Branch | None,
    reads: Sequence[tuple[str, Branch]],
    others: Iterable[PipelineSpec],
) -> list[tuple[str, str]]:
    """What is wrong with a pipeline's place in the graph of the ``others``.

    Args:
        name: the pipeline's name.
        output: the branch it writes (None when the spec's output is itself invalid).
        reads: ``(JSON path of the input, branch it reads)`` for each input.
        others: every other pipeline (one of the same name is ignored: it is replaced).
    Returns:
        ``(JSON path, message)`` per problem: a second writer of the output branch, and
        a cycle through other pipelines back to this one.
    """
    rest = [s for s in others if s.name != name]
    problems: list[tuple[str, str]] = []
    if output is not None:
        for other in rest:
            if (other.output.repo, other.output.branch) == output:
                problems.append(
                    (
                        "output",
                        f"pipeline {other.name} writes {output[0]}/{output[1]} already "
                        "(a branch has one writer); give this pipeline another output",
                    )
                )
        feeds: dict[Branch, list[PipelineSpec]] = {}
        for other in rest:
            for source in other.inputs:
                feeds.setdefault((source.repo, source.branch), []).append(other)
        reached: dict[Branch, list[str]] = {output: [name]}
        todo = [output]
        while todo:
            branch = todo.pop()
            for other in feeds.get(branch, []):
                target = (other.output.repo, other.output.branch)
                if target not in reached:
                    reached[target] = [*reached[branch], other.name]
                    todo.append(target)
        for path, read in reads:
            if read in reached and read != output:
                chain = " -> ".join([*reached[read], name])
                problems.append(
                    (
                        path,
                        f"reads {read[0]}/{read[1]}, which this pipeline feeds through "
                        f"other pipelines, a cycle ({chain}): pipelines must form a DAG",
                    )
                )
    return problems


def downstream(specs: Iterable[PipelineSpec], start: Branch) -> list[PipelineSpec]:
    """Every pipeline that reads ``start``, directly or through other pipelines'
    outputs, upstream ones first (a topological order)."""
    listed = list(specs)
    found: dict[str, PipelineSpec] = {}
    branches = {start}
    changed = True
    while changed:
        changed = False
        for spec in listed:
            if spec.name in found:
                continue
            if any((i.repo, i.branch) in branches for i in spec.inputs):
                found[spec.name] = spec
                branches.add((spec.output.repo, spec.output.branch))
                changed = True
    return topological(found.values())


def topological(specs: Iterable[PipelineSpec]) -> list[PipelineSpec]:
    """``specs`` ordered so that a pipeline comes after every listed pipeline whose
    output it reads (by name among equals; a cycle, which validation refuses, is broken
    arbitrarily)."""
    todo = sorted(specs, key=lambda s: s.name)
    writers = {(s.output.repo, s.output.branch): s.name for s in todo}
    done: list[PipelineSpec] = []
    placed: set[str] = set()
    while todo:
        ready = [
            s
            for s in todo
            if all(
                writers.get((i.repo, i.branch)) in (None, s.name)
                or writers[(i.repo, i.branch)] in placed
                for i in s.inputs
            )
        ]
        if not ready:
            ready = todo[:1]
        for spec in ready:
            done.append(spec)
            placed.add(spec.name)
        todo = [s for s in todo if s.name not in placed]
    return done


def upstream_pipelines(spec: PipelineSpec, specs: Iterable[PipelineSpec]) -> list[str]:
    """Names of the pipelines whose output ``spec`` reads directly."""
    writers = {(s.output.repo, s.output.branch): s.name for s in specs}
    return sorted(
        {
            writers[(i.repo, i.branch)]
            for i in spec.inputs
            if (i.repo, i.branch) in writers and writers[(i.repo, i.branch)] != spec.name
        }
    )
