"""Validation of a whole spec: every problem found (its fields, its inputs, and
those the caller's ``context`` check finds against the world) is reported at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pfs_volume.names import DEFAULT_BRANCH
from pfs_volume.pipelines.spec import checks
from pfs_volume.pipelines.spec.model import (
    COMBINATIONS,
    DEFAULT_GLOB,
    INPUT_FIELDS,
    INPUT_ROOT,
    MAX_INPUTS,
    SPEC_FIELDS,
    Combine,
    InputSpec,
    OutputSpec,
    PipelineSpec,
    Resources,
)
from pfs_volume.pipelines.spec.problems import Problems, kind, mapping_fields


@dataclass(frozen=True)
class SpecOutline:
    """What a spec says about its place among repos and pipelines, as far as it could be
    read (handed to ``validate``'s ``context`` check even when other fields are bad)."""

    name: str | None
    reads: tuple[tuple[str, InputSpec], ...]
    """``(JSON path, input)`` for each readable input."""
    output: tuple[str, str] | None
    """``(repo, branch)``, None when the output is invalid."""


ContextCheck = Callable[[SpecOutline], list[tuple[str, str]]]
"""Problems (``(JSON path, message)``) a spec has with the world: missing repos, a
second writer, a cycle of pipelines."""


def validate(raw: Any, context: ContextCheck | None = None) -> PipelineSpec:
    """Check a parsed spec (a mapping from JSON or YAML) and build the ``PipelineSpec``.

    Args:
        raw: what ``json.loads`` or ``yaml.safe_load`` returned.
        context: checks against the repos and pipelines that exist; its problems are
            reported together with the spec's own.
    Returns:
        The spec, with every default filled in.
    Raises:
        InvalidRequest: listing every problem found, one per line, each prefixed with
            the JSON path of the offending value (``transform.cmd[0]: ...``).
    """
    problems = Problems()
    fields = mapping_fields(problems, "", raw, SPEC_FIELDS, required=("name", "input", "transform"))
    if fields is None:
        problems.raise_if_any()
        raise AssertionError("unreachable: a spec that is not a mapping is a problem")
    name = (
        checks.component(problems, "name", fields["name"], "pipeline") if "name" in fields else None
    )
    inputs, combine = _inputs(problems, fields["input"]) if "input" in fields else ([], "cross")
    transform = checks.transform(problems, fields["transform"]) if "transform" in fields else None
    output_given = "output" in fields
    output_repo, output_branch = checks.output(problems, fields.get("output"), name, output_given)
    parallelism = 1
    if "parallelism" in fields:
        parallelism = checks.parallelism(problems, fields["parallelism"]) or 1
    resources = Resources()
    if "resources" in fields:
        resources = checks.resources(problems, fields["resources"])
    tries = 1
    if "datum_tries" in fields:
        tries = checks.tries(problems, fields["datum_tries"]) or 1
    timeouts = {
        key: checks.timeout(problems, key, fields[key]) if key in fields else None
        for key in ("datum_timeout", "job_timeout")
    }
    if output_repo is not None:
        _check_loop(problems, output_repo, output_given, inputs)
    if context is not None:
        output = (output_repo, output_branch) if output_repo and output_branch else None
        outline = SpecOutline(name, tuple((item.path, item.spec) for item in inputs), output)
        for path, message in context(outline):
            problems.add(path, message)
    problems.raise_if_any()
    assert name is not None and transform is not None
    assert output_repo is not None and output_branch is not None
    return PipelineSpec(
        name=name,
        inputs=tuple(item.spec for item in inputs),
        combine=combine,
        transform=transform,
        output=OutputSpec(repo=output_repo, branch=output_branch),
        parallelism=parallelism,
        resources=resources,
        datum_tries=tries,
        datum_timeout=timeouts["datum_timeout"],
        job_timeout=timeouts["job_timeout"],
    )


@dataclass(frozen=True)
class _ParsedInput:
    path: str
    spec: InputSpec
    named: bool
    """Whether ``name`` was written (else it defaulted to the repo)."""


def _inputs(problems: Problems, raw: Any) -> tuple[list[_ParsedInput], Combine]:
    """The valid inputs, each with its JSON path, and how they combine."""
    if isinstance(raw, list):
        problems.add(
            "input",
            'a list is ambiguous; write {"cross": [...]} (every combination of the '
            "inputs' datums) or {\"union\": [...]} (each input's datums alone), or one "
            'input as {"repo": ...}',
        )
        return [], "cross"
    if not (isinstance(raw, dict) and any(key in raw for key in COMBINATIONS)):
        single = _input(problems, "input", raw)
        return ([single] if single is not None else []), "cross"
    given = [key for key in COMBINATIONS if key in raw]
    if len(given) > 1:
        problems.add("input", 'give either "cross" or "union", not both')
        return [], "cross"
    combine: Combine = "cross" if given[0] == "cross" else "union"
    mapping_fields(problems, "input", raw, COMBINATIONS)
    items = raw[combine]
    path = f"input.{combine}"
    if not isinstance(items, list):
        problems.add(path, f"must be a list of inputs, not {kind(items)}")
        return [], combine
    if not 2 <= len(items) <= MAX_INPUTS:
        problems.add(
            path,
            f"has {len(items)} input{'' if len(items) == 1 else 's'}; a {combine} takes "
            f'2 to {MAX_INPUTS} (write a single input as "input": {{"repo": ...}})',
        )
    inputs = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        nested = [key for key in COMBINATIONS if isinstance(item, dict) and key in item]
        if nested:
            problems.add(
                item_path,
                f"a {' or '.join(nested)} inside a {combine} is not supported; list the "
                "inputs themselves",
            )
            continue
        parsed = _input(problems, item_path, item)
        if parsed is not None:
            inputs.append(parsed)
    _check_collisions(problems, inputs)
    return inputs, combine


def _input(problems: Problems, path: str, raw: Any) -> _ParsedInput | None:
    """An input; None when its repo or name is unusable. One with other problems is
    still returned (they are recorded) so collisions and loops can be checked too."""
    fields = mapping_fields(problems, path, raw, INPUT_FIELDS, required=("repo",))
    if fields is None:
        return None
    repo = (
        checks.component(problems, f"{path}.repo", fields["repo"], "repo")
        if "repo" in fields
        else None
    )
    branch = DEFAULT_BRANCH
    if "branch" in fields:
        branch = checks.component(problems, f"{path}.branch", fields["branch"], "branch") or ""
    glob = DEFAULT_GLOB
    if "glob" in fields:
        glob = checks.glob(problems, f"{path}.glob", fields["glob"]) or ""
    name: str | None = ""
    if "name" in fields:
        name = checks.component(problems, f"{path}.name", fields["name"], "input")
    if repo is None or name is None:
        return None
    spec = InputSpec(repo=repo, branch=branch, glob=glob, name=name)
    return _ParsedInput(path=path, spec=spec, named="name" in fields)


def _check_collisions(problems: Problems, inputs: list[_ParsedInput]) -> None:
    """Two inputs would be mounted at one /pfs/in/NAME."""
    first: dict[str, str] = {}
    for item in inputs:
        name = item.spec.name
        if name not in first:
            first[name] = item.path
        elif item.named:
            problems.add(
                f"{item.path}.name",
                f"{name!r} is also the name of {first[name]}; each input is mounted at "
                f"{INPUT_ROOT}/NAME, so names must differ",
            )
        else:
            problems.add(
                f"{item.path}.repo",
                f"{first[name]} is mounted at {INPUT_ROOT}/{name} too (an input's name "
                'defaults to its repo); give one of them a distinct "name"',
            )


def _check_loop(
    problems: Problems, output_repo: str, explicit: bool, inputs: list[_ParsedInput]
) -> None:
    """The output repo is an input's repo: every output commit would trigger a new job."""
    item = next((item for item in inputs if item.spec.repo == output_repo), None)
    if item is None:
        return
    if explicit:
        problems.add(
            "output.repo",
            f"{output_repo!r} is also the repo of {item.path}; a pipeline cannot read its "
            "own output (each output commit would trigger it again)",
        )
    else:
        problems.add(
            "name",
            f"the output repo defaults to the pipeline's name, {output_repo!r}, which is "
            f"also the repo of {item.path}; a pipeline cannot read its own output: rename "
            "the pipeline or set output.repo",
        )
