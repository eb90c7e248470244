"""The pipeline spec: its grammar, validation and canonical form (pure logic).

A spec is one JSON or YAML mapping. In JSON::

    {
      "name": "edges",
      "input": {"cross": [
        {"repo": "images", "glob": "/*"},
        {"repo": "models", "branch": "stable", "glob": "/", "name": "model"}
      ]},
      "transform": {
        "image": "python:3.12-slim",
        "cmd": ["python", "/code/edges.py"],
        "env": {"THRESHOLD": "0.5"}
      },
      "output": {"repo": "edges", "branch": "master"},
      "parallelism": 4,
      "resources": {"memory": "512M", "cpus": 1.5}
    }

The same in YAML, with one input and the defaults left out::

    name: edges
    input:
      repo: images
      glob: /*
    transform:
      image: python:3.12-slim
      cmd: [python, /code/edges.py]

The fields (anything else is rejected, at every level):

``name`` (required)
    The pipeline's name: a repo name (1-63 of ``A-Za-z0-9_.-``, first a letter or digit).
``input`` (required), one of
    * one input: ``{"repo": R, "branch": B, "glob": G, "name": N}``;
    * ``{"cross": [INPUT, INPUT, ...]}``: every combination of the inputs' datums;
    * ``{"union": [INPUT, INPUT, ...]}``: each input's datums on their own.

    A combination takes 2 to ``MAX_INPUTS`` inputs and does not nest. A bare list is
    refused rather than guessed at: write ``cross`` or ``union``. In an input, ``repo``
    is required; ``branch`` defaults to ``master``; ``glob`` defaults to ``/`` (the
    whole input is one datum: the only split that is right for every command, since one
    that aggregates over all files would silently compute per-file results under
    ``/*``); ``name`` defaults to the repo and is where the input is mounted,
    ``/pfs/in/NAME``, so two inputs of one repo need distinct names.
``transform`` (required)
    ``image`` (a Docker image, no whitespace), ``cmd`` (a non-empty list of strings: no
    shell is implied) and ``env`` (a mapping of variable names to strings; names
    starting with ``PFS_`` are reserved for what pfs itself sets).
``output``
    ``repo`` (default: the pipeline's name) and ``branch`` (default ``master``). The
    output repo may not be one of the inputs' repos: the pipeline would feed itself.
``parallelism``
    How many containers process datums at once, 1 to ``MAX_PARALLELISM`` (default 1).
``resources``
    Per container: ``memory`` (``"512M"``, ``"1G"`` or a number of bytes, at least
    ``MIN_MEMORY``: Docker's own lower limit) and ``cpus`` (a number above 0, at most
    ``MAX_CPUS``). Unset means no limit.
``datum_tries``
    How many times a failing datum is run before the job fails, 1 to ``MAX_TRIES``
    (default 1: no retry). Each try starts on a fresh, empty ``/pfs/out``.
``datum_timeout``, ``job_timeout``
    How long one datum's container, and a whole job, may run: a number of seconds or
    a duration string (``"90s"``, ``"10m"``, ``"2h"``, ``"1h30m"``), above 0 and at most
    ``MAX_TIMEOUT`` (a week). Unset means no limit of pfs's own. A datum over its limit
    has its container killed and fails ("timed out after N s"; it is tried again if
    tries are left); a job over its limit has every container removed and fails
    ("job timed out after N s") with nothing committed.

``datum_tries``, the timeouts, the output, ``parallelism`` and ``resources`` do not
change what a datum writes, so they are not part of the fingerprint: changing them
reuses every earlier datum output.

Globs: ``/`` is the whole input; otherwise ``/SEG/SEG...``, one segment per directory
level, each a literal name or an ``fnmatch`` pattern (``*``, ``?``, ``[...]``, ``[!...]``;
``*`` also matches names starting with a dot). A datum is each path at exactly that depth
whose segments all match: ``/*`` is each top-level file or folder, ``/*/*.csv`` each CSV
file one folder down. Empty segments, ``.``, ``..`` and ``**`` are refused.

Validation collects every problem before failing, each line prefixed with the JSON path
of what is wrong (``input.cross[1].glob: ...``), and raises one ``InvalidRequest``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from pfs_volume import strict_json
from pfs_volume.config import parse_size
from pfs_volume.errors import InvalidName, InvalidRequest
from pfs_volume.names import DEFAULT_BRANCH, GRAMMAR, check_component

Combine = Literal["cross", "union"]

INPUT_ROOT = "/pfs/in"
"""Inputs are mounted read-only at ``INPUT_ROOT/NAME``."""
OUTPUT_ROOT = "/pfs/out"
"""The output branch's working copy is mounted here."""

DEFAULT_GLOB = "/"
MAX_INPUTS = 16
MAX_PARALLELISM = 64
MAX_CPUS = 64.0
MIN_MEMORY = 6 * 1024**2
"""Docker refuses a memory limit below 6 MiB."""
MAX_SPEC_BYTES = 1024**2
MAX_TRIES = 10
MAX_TIMEOUT = 7 * 24 * 3600
"""The longest datum or job timeout, in seconds (a week)."""
MAX_PROBLEMS = 100
"""Beyond this many problems the rest are counted, not listed (a spec can be huge)."""

SPEC_FIELDS = (
    "name",
    "input",
    "transform",
    "output",
    "parallelism",
    "resources",
    "datum_tries",
    "datum_timeout",
    "job_timeout",
)
INPUT_FIELDS = ("repo", "branch", "glob", "name")
COMBINATIONS = ("cross", "union")
TRANSFORM_FIELDS = ("image", "cmd", "env")
OUTPUT_FIELDS = ("repo", "branch")
RESOURCE_FIELDS = ("memory", "cpus")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENV = "PFS_"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GRAMMAR_SUFFIX = "; " + GRAMMAR
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_DURATION_HINT = 'seconds as a number, or a duration such as "90s", "10m", "2h" or "1h30m"'


@dataclass(frozen=True)
class InputSpec:
    """One input: a branch of a repo, split into datums by ``glob``.

    ``name`` is where the input is mounted (``/pfs/in/NAME``) and how datums refer to
    it; left empty it becomes the repo's name.
    """

    repo: str
    branch: str = DEFAULT_BRANCH
    glob: str = DEFAULT_GLOB
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.repo)


@dataclass(frozen=True)
class Transform:
    """What runs: an image and a command (argument list), with extra environment.

    ``env`` is sorted by name, so equal environments compare and hash equal.
    """

    image: str
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutputSpec:
    """Where results go: a branch of the output repo."""

    repo: str
    branch: str = DEFAULT_BRANCH


@dataclass(frozen=True)
class Resources:
    """Per-container limits; None is no limit."""

    memory_bytes: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline spec. ``combine`` is ``"cross"`` for a single input."""

    name: str
    inputs: tuple[InputSpec, ...]
    combine: Combine
    transform: Transform
    output: OutputSpec
    parallelism: int = 1
    resources: Resources = field(default_factory=Resources)
    datum_tries: int = 1
    datum_timeout: float | None = None
    """Seconds; None is no limit."""
    job_timeout: float | None = None
    """Seconds; None is no limit."""


def parse_duration(raw: Any) -> float:
    """Seconds from a number or a duration string (``"90s"``, ``"10m"``, ``"2h"``,
    ``"1h30m"``, ``"1.5h"``; a bare string number is seconds).

    Raises:
        InvalidRequest: saying what was given and what is accepted; also for a duration
            that is not above 0 or is over ``MAX_TIMEOUT``.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidRequest(f"must be {_DURATION_HINT}, not {_kind(raw)}")
    if isinstance(raw, str):
        text = raw.strip()
        found = _DURATION.fullmatch(text) if text else None
        if found is not None and any(found.groups()):
            hours, minutes, secs = (float(part) if part else 0.0 for part in found.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise InvalidRequest(f"{_show(raw)} is not {_DURATION_HINT}") from None
    else:
        seconds = float(raw)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        raise InvalidRequest(
            f"{_show(raw)} is out of range; give above 0 and at most {MAX_TIMEOUT} s (a week)"
        )
    return seconds


def split_glob(glob: str) -> tuple[str, ...]:
    """The segments of a glob: ``()`` for ``/``, ``("*", "*.csv")`` for ``/*/*.csv``.

    Raises:
        InvalidRequest: saying what is wrong with the glob.
    """
    if not glob.startswith("/"):
        raise InvalidRequest(
            f"the glob {_show(glob)} must start with '/' (the input's root), as in / or /*"
        )
    if glob == "/":
        return ()
    segments = tuple(glob[1:].split("/"))
    for segment in segments:
        if not segment:
            raise InvalidRequest(
                f"the glob {_show(glob)} has an empty segment (a '//' or a trailing '/')"
            )
        if segment in (".", ".."):
            raise InvalidRequest(
                f"the glob {_show(glob)} has a {segment!r} segment; a glob selects paths "
                "inside the input, one segment per level"
            )
        if "**" in segment:
            raise InvalidRequest(
                f"the glob {_show(glob)} has '**'; any-depth matching is not supported: "
                "write one segment per level, as in /*/*"
            )
        if "\0" in segment:
            raise InvalidRequest(f"the glob {_show(glob)} contains a NUL character")
        if not _brackets_closed(segment):
            raise InvalidRequest(
                f"the glob {_show(glob)} has a '[' without a closing ']' in {segment!r}"
            )
    return segments


def parse_spec(text: str | bytes, *, filename_hint: str | None = None) -> PipelineSpec:
    """Parse and validate a spec written in JSON or YAML (see ``load_spec``, ``validate``).

    Raises:
        InvalidRequest: for text ``load_spec`` refuses, or a spec that does not validate.
    """
    return validate(load_spec(text, filename_hint=filename_hint))


def load_spec(text: str | bytes, *, filename_hint: str | None = None) -> Any:
    """Read a spec written in JSON or YAML, not yet validated.

    Args:
        text: the spec's text (bytes are decoded as UTF-8).
        filename_hint: the file it came from, if any: ``.json`` means JSON only,
            ``.yaml``/``.yml`` YAML only; otherwise text starting with ``{`` or ``[`` is
            read as JSON (then as YAML, for a YAML flow mapping), anything else as YAML.
    Returns:
        What the text holds (give it to ``validate``).
    Raises:
        InvalidRequest: for text that is not UTF-8, JSON or YAML, has a key twice in
            one mapping, or is too long.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise InvalidRequest(
            f"the pipeline spec is {size} bytes long; at most {MAX_SPEC_BYTES} are allowed"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the pipeline spec is not UTF-8 text: {exc}") from None
    suffix = filename_hint.lower().rpartition(".")[2] if filename_hint else ""
    if suffix == "json":
        return _load_json(text)
    if suffix in ("yaml", "yml"):
        return _load_yaml(text)
    if text.lstrip().startswith(("{", "[")):
        try:
            return _load_json(text)
        except InvalidRequest as json_error:
            try:
                return _load_yaml(text)
            except InvalidRequest:
                raise json_error from None
    return _load_yaml(text)


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
    problems = _Problems()
    fields = _fields(problems, "", raw, SPEC_FIELDS, required=("name", "input", "transform"))
    if fields is None:
        problems.raise_if_any()
        raise AssertionError("unreachable: a spec that is not a mapping is a problem")
    name = _component(problems, "name", fields["name"], "pipeline") if "name" in fields else None
    inputs, combine = _inputs(problems, fields["input"]) if "input" in fields else ([], "cross")
    transform = _transform(problems, fields["transform"]) if "transform" in fields else None
    output_given = "output" in fields
    output_repo, output_branch = _output(problems, fields.get("output"), name, output_given)
    parallelism = 1
    if "parallelism" in fields:
        parallelism = _parallelism(problems, fields["parallelism"]) or 1
    resources = Resources()
    if "resources" in fields:
        resources = _resources(problems, fields["resources"])
    tries = 1
    if "datum_tries" in fields:
        tries = _tries(problems, fields["datum_tries"]) or 1
    timeouts = {
        key: _timeout(problems, key, fields[key]) if key in fields else None
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


def spec_to_json(spec: PipelineSpec) -> dict[str, Any]:
    """The canonical JSON form of a spec: every default written out, env sorted,
    memory in bytes. ``validate(spec_to_json(spec)) == spec``."""
    inputs = [
        {"repo": i.repo, "branch": i.branch, "glob": i.glob, "name": i.name} for i in spec.inputs
    ]
    resources: dict[str, Any] = {}
    if spec.resources.memory_bytes is not None:
        resources["memory"] = spec.resources.memory_bytes
    if spec.resources.cpus is not None:
        resources["cpus"] = spec.resources.cpus
    body: dict[str, Any] = {
        "name": spec.name,
        "input": inputs[0] if len(inputs) == 1 else {spec.combine: inputs},
        "transform": {
            "image": spec.transform.image,
            "cmd": list(spec.transform.cmd),
            "env": dict(spec.transform.env),
        },
        "output": {"repo": spec.output.repo, "branch": spec.output.branch},
        "parallelism": spec.parallelism,
        "resources": resources,
        "datum_tries": spec.datum_tries,
    }
    if spec.datum_timeout is not None:
        body["datum_timeout"] = spec.datum_timeout
    if spec.job_timeout is not None:
        body["job_timeout"] = spec.job_timeout
    return body


def fingerprint(spec: PipelineSpec) -> str:
    """What a datum's output depends on besides its data, as 64 hex digits.

    It covers the transform (image, command, environment), how inputs combine and, per
    input, its mount name, repo and glob: change any of them and no earlier datum output
    can be reused. The input branch is left out (the data is compared commit by commit,
    whichever branch it came from), and so are the output, parallelism and resources,
    which do not change what a datum produces.
    """
    canonical = {
        "transform": spec_to_json(spec)["transform"],
        "combine": spec.combine,
        "inputs": [{"name": i.name, "repo": i.repo, "glob": i.glob} for i in spec.inputs],
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Problems:
    """The problems found so far, each as ``PATH: what is wrong``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}" if path else message)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        count = len(self.lines)
        shown = self.lines[:MAX_PROBLEMS]
        if count > MAX_PROBLEMS:
            shown.append(f"... and {count - MAX_PROBLEMS} more problems")
        header = f"the pipeline spec has {count} problem{'s' if count > 1 else ''}:"
        raise InvalidRequest("\n".join([header, *shown]))


def _fields(
    problems: _Problems,
    path: str,
    value: Any,
    accepted: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The known fields of a mapping; unknown and missing ones become problems."""
    if value is None and not path:
        problems.add(path, f"the pipeline spec is empty; give a mapping of {_listing(accepted)}")
        return None
    if not isinstance(value, dict):
        what = "" if path else "the pipeline spec "
        problems.add(path, f"{what}must be a mapping of {_listing(accepted)}, not {_kind(value)}")
        return None
    known: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key in accepted:
            known[key] = item
            continue
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(_key(path, key), f"unknown field{hint}; accepted: {_listing(accepted)}")
    for key in required:
        if key not in known:
            problems.add(_key(path, key), "required field is missing")
    return known


@dataclass(frozen=True)
class _ParsedInput:
    path: str
    spec: InputSpec
    named: bool
    """Whether ``name`` was written (else it defaulted to the repo)."""


def _inputs(problems: _Problems, raw: Any) -> tuple[list[_ParsedInput], Combine]:
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
    _fields(problems, "input", raw, COMBINATIONS)
    items = raw[combine]
    path = f"input.{combine}"
    if not isinstance(items, list):
        problems.add(path, f"must be a list of inputs, not {_kind(items)}")
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


def _input(problems: _Problems, path: str, raw: Any) -> _ParsedInput | None:
    """An input; None when its repo or name is unusable. One with other problems is
    still returned (they are recorded) so collisions and loops can be checked too."""
    fields = _fields(problems, path, raw, INPUT_FIELDS, required=("repo",))
    if fields is None:
        return None
    repo = (
        _component(problems, f"{path}.repo", fields["repo"], "repo") if "repo" in fields else None
    )
    branch = DEFAULT_BRANCH
    if "branch" in fields:
        branch = _component(problems, f"{path}.branch", fields["branch"], "branch") or ""
    glob = DEFAULT_GLOB
    if "glob" in fields:
        glob = _glob(problems, f"{path}.glob", fields["glob"]) or ""
    name: str | None = ""
    if "name" in fields:
        name = _component(problems, f"{path}.name", fields["name"], "input")
    if repo is None or name is None:
        return None
    spec = InputSpec(repo=repo, branch=branch, glob=glob, name=name)
    return _ParsedInput(path=path, spec=spec, named="name" in fields)


def _check_collisions(problems: _Problems, inputs: list[_ParsedInput]) -> None:
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


def variable_problems(reads: Iterable[tuple[str, InputSpec]]) -> list[tuple[str, str]]:
    """Inputs whose datum paths would be given in one variable (``in-a``, ``in_a``):
    a datum would see one's path under the other's name. Checked when a spec is
    created or updated (a stored spec is read as it was accepted)."""
    problems: list[tuple[str, str]] = []
    variables: dict[str, tuple[str, str]] = {}
    for path, item in reads:
        variable = datum_variable(item.name)
        other = variables.setdefault(variable, (item.name, path))
        if other[0] != item.name:
            problems.append(
                (
                    f"{path}.name",
                    f"input {item.name!r} and input {other[0]!r} ({other[1]}) would both "
                    f"give their path in {variable}; give one of them a name that differs "
                    "in more than case or punctuation",
                )
            )
    return problems


def datum_variable(name: str) -> str:
    """The environment variable that gives an input's datum path: ``PFS_DATUM_`` and
    the name upper-cased, each character that is not a letter or digit as ``_``."""
    return "PFS_DATUM_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper()


def _check_loop(
    problems: _Problems, output_repo: str, explicit: bool, inputs: list[_ParsedInput]
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


def _transform(problems: _Problems, raw: Any) -> Transform | None:
    fields = _fields(problems, "transform", raw, TRANSFORM_FIELDS, required=("image", "cmd"))
    if fields is None:
        return None
    before = len(problems.lines)
    image = _image(problems, fields["image"]) if "image" in fields else ""
    cmd = _cmd(problems, fields["cmd"]) if "cmd" in fields else ()
    env = _env(problems, fields["env"]) if "env" in fields else ()
    if len(problems.lines) > before or not image or not cmd:
        return None
    return Transform(image=image, cmd=cmd, env=env)


def _image(problems: _Problems, raw: Any) -> str:
    path = "transform.image"
    if not isinstance(raw, str):
        problems.add(path, f"must be a string (a Docker image), not {_kind(raw)}")
        return ""
    if not raw:
        problems.add(path, "is empty; name a Docker image, e.g. python:3.12-slim")
        return ""
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        problems.add(path, f"{_show(raw)} contains whitespace or a control character")
        return ""
    return raw


def _cmd(problems: _Problems, raw: Any) -> tuple[str, ...]:
    path = "transform.cmd"
    if not isinstance(raw, list):
        hint = ' (no shell is implied: write ["sh", "-c", "..."] for one)'
        problems.add(
            path,
            f"must be a list of strings, not {_kind(raw)}{hint if isinstance(raw, str) else ''}",
        )
        return ()
    if not raw:
        problems.add(path, "is empty; give the command and its arguments")
        return ()
    good = True
    for index, arg in enumerate(raw):
        if not isinstance(arg, str):
            problems.add(f"{path}[{index}]", f"must be a string, not {_kind(arg)}")
            good = False
        elif "\0" in arg:
            problems.add(f"{path}[{index}]", "contains a NUL character")
            good = False
    return tuple(raw) if good else ()


def _env(problems: _Problems, raw: Any) -> tuple[tuple[str, str], ...]:
    path = "transform.env"
    if not isinstance(raw, dict):
        problems.add(path, f"must be a mapping of variable names to strings, not {_kind(raw)}")
        return ()
    env = []
    for key, value in raw.items():
        key_path = _key(path, key)
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.add(
                key_path,
                f"{_show(key)} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
            )
        elif key.startswith(_RESERVED_ENV):
            problems.add(key_path, f"names starting with {_RESERVED_ENV} are reserved for pfs")
        elif not isinstance(value, str):
            problems.add(
                key_path,
                f'must be a string, not {_kind(value)} (quote it in YAML: {key}: "...")',
            )
        elif "\0" in value:
            problems.add(key_path, "contains a NUL character")
        else:
            env.append((key, value))
    return tuple(sorted(env))


def _output(
    problems: _Problems, raw: Any, name: str | None, given: bool
) -> tuple[str | None, str | None]:
    """The output repo and branch (None where invalid or, for the repo, unknown)."""
    if not given:
        return name, DEFAULT_BRANCH
    fields = _fields(problems, "output", raw, OUTPUT_FIELDS)
    if fields is None:
        return None, None
    repo = name
    if "repo" in fields:
        repo = _component(problems, "output.repo", fields["repo"], "repo")
    branch: str | None = DEFAULT_BRANCH
    if "branch" in fields:
        branch = _component(problems, "output.branch", fields["branch"], "branch")
    return repo, branch


def _parallelism(problems: _Problems, raw: Any) -> int | None:
    if not _is_int(raw):
        problems.add("parallelism", f"must be an integer, not {_kind(raw)}")
        return None
    if not 1 <= raw <= MAX_PARALLELISM:
        problems.add("parallelism", f"{raw} is out of range; give 1 to {MAX_PARALLELISM}")
        return None
    return int(raw)


def _tries(problems: _Problems, raw: Any) -> int | None:
    if not _is_int(raw):
        problems.add("datum_tries", f"must be an integer, not {_kind(raw)}")
        return None
    if not 1 <= raw <= MAX_TRIES:
        problems.add("datum_tries", f"{raw} is out of range; give 1 to {MAX_TRIES}")
        return None
    return int(raw)


def _timeout(problems: _Problems, path: str, raw: Any) -> float | None:
    try:
        return parse_duration(raw)
    except InvalidRequest as exc:
        problems.add(path, str(exc))
        return None


def _resources(problems: _Problems, raw: Any) -> Resources:
    fields = _fields(problems, "resources", raw, RESOURCE_FIELDS)
    if fields is None:
        return Resources()
    memory = _memory(problems, fields["memory"]) if "memory" in fields else None
    cpus = _cpus(problems, fields["cpus"]) if "cpus" in fields else None
    return Resources(memory_bytes=memory, cpus=cpus)


def _memory(problems: _Problems, raw: Any) -> int | None:
    path = "resources.memory"
    if _is_int(raw):
        size = int(raw)
    elif isinstance(raw, str):
        try:
            size = parse_size(raw)
        except InvalidRequest as exc:
            problems.add(path, str(exc))
            return None
    else:
        problems.add(path, f'must be a size such as "512M" or a number of bytes, not {_kind(raw)}')
        return None
    if size < MIN_MEMORY:
        problems.add(path, f"{size} bytes is below Docker's minimum of {MIN_MEMORY} (6M)")
        return None
    return size


def _cpus(problems: _Problems, raw: Any) -> float | None:
    path = "resources.cpus"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.add(path, f"must be a number, not {_kind(raw)}")
        return None
    if not (math.isfinite(raw) and 0 < raw <= MAX_CPUS):
        problems.add(path, f"{raw} is out of range; give a number above 0, at most {MAX_CPUS:g}")
        return None
    return float(raw)


def _component(problems: _Problems, path: str, raw: Any, what: str) -> str | None:
    """A repo, branch, pipeline or input name, checked like a volume name's parts."""
    if not isinstance(raw, str):
        problems.add(path, f"must be a string, not {_kind(raw)}")
        return None
    try:
        return check_component(raw, what)
    except InvalidName as exc:
        # The volume-name grammar the message ends with is noise in a spec.
        problems.add(path, str(exc).removesuffix(_GRAMMAR_SUFFIX))
        return None


def _glob(problems: _Problems, path: str, raw: Any) -> str | None:
    if not isinstance(raw, str):
        problems.add(path, f"must be a string such as / or /*, not {_kind(raw)}")
        return None
    try:
        split_glob(raw)
    except InvalidRequest as exc:
        problems.add(path, str(exc))
        return None
    return raw


def _brackets_closed(segment: str) -> bool:
    """Whether every ``[`` opens a class that ``fnmatch`` would close (else it would be
    matched literally, which is rarely what was meant)."""
    index = 0
    while index < len(segment):
        if segment[index] == "[":
            end = index + 1
            if end < len(segment) and segment[end] == "!":
                end += 1
            if end < len(segment) and segment[end] == "]":
                end += 1
            end = segment.find("]", end)
            if end < 0:
                return False
            index = end
        index += 1
    return True


def _load_json(text: str) -> Any:
    return strict_json.loads(text, "the pipeline spec", MAX_SPEC_BYTES)


def _load_yaml(text: str) -> Any:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"the pipeline spec is not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the pipeline spec is nested too deeply") from None
    strict_json.check_tree(raw, "the pipeline spec")
    return raw


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error
    (PyYAML keeps the last one silently). Keys merged in with ``<<`` may be overridden."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports it
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _key(path: str, key: Any) -> str:
    """The JSON path of ``key`` under ``path``: ``a.b``, or ``a["b c"]`` when needed."""
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    text = json.dumps(key if isinstance(key, str) else str(key), ensure_ascii=False)
    return f"{path}[{text}]"


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(names)


def _show(value: Any, keep: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= keep else text[:keep] + "..."
