"""Checks of a spec's fields, one function per field: each records what is wrong with
the value (in a ``Problems``) and returns what it could make of it."""

from __future__ import annotations

import math
import re
from typing import Any

from pfs_volume.config import parse_size
from pfs_volume.errors import InvalidName, InvalidRequest
from pfs_volume.names import DEFAULT_BRANCH, GRAMMAR, check_component
from pfs_volume.pipelines.spec.model import (
    MAX_CPUS,
    MAX_PARALLELISM,
    MAX_TRIES,
    MIN_MEMORY,
    OUTPUT_FIELDS,
    RESOURCE_FIELDS,
    TRANSFORM_FIELDS,
    Resources,
    Transform,
)
from pfs_volume.pipelines.spec.problems import (
    Problems,
    field_path,
    is_int,
    kind,
    mapping_fields,
    show,
)
from pfs_volume.pipelines.spec.values import parse_duration, split_glob

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENV = "PFS_"
_GRAMMAR_SUFFIX = "; " + GRAMMAR


def transform(problems: Problems, raw: Any) -> Transform | None:
    """The ``transform`` (image, cmd, env); None when any part of it is wrong."""
    fields = mapping_fields(problems, "transform", raw, TRANSFORM_FIELDS, required=("image", "cmd"))
    if fields is None:
        return None
    before = len(problems.lines)
    image = _image(problems, fields["image"]) if "image" in fields else ""
    cmd = _cmd(problems, fields["cmd"]) if "cmd" in fields else ()
    env = _env(problems, fields["env"]) if "env" in fields else ()
    if len(problems.lines) > before or not image or not cmd:
        return None
    return Transform(image=image, cmd=cmd, env=env)


def _image(problems: Problems, raw: Any) -> str:
    path = "transform.image"
    if not isinstance(raw, str):
        problems.add(path, f"must be a string (a Docker image), not {kind(raw)}")
        return ""
    if not raw:
        problems.add(path, "is empty; name a Docker image, e.g. python:3.12-slim")
        return ""
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        problems.add(path, f"{show(raw)} contains whitespace or a control character")
        return ""
    return raw


def _cmd(problems: Problems, raw: Any) -> tuple[str, ...]:
    path = "transform.cmd"
    if not isinstance(raw, list):
        hint = ' (no shell is implied: write ["sh", "-c", "..."] for one)'
        problems.add(
            path,
            f"must be a list of strings, not {kind(raw)}{hint if isinstance(raw, str) else ''}",
        )
        return ()
    if not raw:
        problems.add(path, "is empty; give the command and its arguments")
        return ()
    good = True
    for index, arg in enumerate(raw):
        if not isinstance(arg, str):
            problems.add(f"{path}[{index}]", f"must be a string, not {kind(arg)}")
            good = False
        elif "\0" in arg:
            problems.add(f"{path}[{index}]", "contains a NUL character")
            good = False
    return tuple(raw) if good else ()


def _env(problems: Problems, raw: Any) -> tuple[tuple[str, str], ...]:
    path = "transform.env"
    if not isinstance(raw, dict):
        problems.add(path, f"must be a mapping of variable names to strings, not {kind(raw)}")
        return ()
    env = []
    for key, value in raw.items():
        key_path = field_path(path, key)
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            problems.add(
                key_path,
                f"{show(key)} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
            )
        elif key.startswith(_RESERVED_ENV):
            problems.add(key_path, f"names starting with {_RESERVED_ENV} are reserved for pfs")
        elif not isinstance(value, str):
            problems.add(
                key_path,
                f'must be a string, not {kind(value)} (quote it in YAML: {key}: "...")',
            )
        elif "\0" in value:
            problems.add(key_path, "contains a NUL character")
        else:
            env.append((key, value))
    return tuple(sorted(env))


def output(
    problems: Problems, raw: Any, name: str | None, given: bool
) -> tuple[str | None, str | None]:
    """The output repo and branch (None where invalid or, for the repo, unknown)."""
    if not given:
        return name, DEFAULT_BRANCH
    fields = mapping_fields(problems, "output", raw, OUTPUT_FIELDS)
    if fields is None:
        return None, None
    repo = name
    if "repo" in fields:
        repo = component(problems, "output.repo", fields["repo"], "repo")
    branch: str | None = DEFAULT_BRANCH
    if "branch" in fields:
        branch = component(problems, "output.branch", fields["branch"], "branch")
    return repo, branch


def parallelism(problems: Problems, raw: Any) -> int | None:
    """The ``parallelism``; None when it is wrong."""
    if not is_int(raw):
        problems.add("parallelism", f"must be an integer, not {kind(raw)}")
        return None
    if not 1 <= raw <= MAX_PARALLELISM:
        problems.add("parallelism", f"{raw} is out of range; give 1 to {MAX_PARALLELISM}")
        return None
    return int(raw)


def tries(problems: Problems, raw: Any) -> int | None:
    """The ``datum_tries``; None when it is wrong."""
    if not is_int(raw):
        problems.add("datum_tries", f"must be an integer, not {kind(raw)}")
        return None
    if not 1 <= raw <= MAX_TRIES:
        problems.add("datum_tries", f"{raw} is out of range; give 1 to {MAX_TRIES}")
        return None
    return int(raw)


def timeout(problems: Problems, path: str, raw: Any) -> float | None:
    """A ``datum_timeout`` or ``job_timeout`` in seconds; None when it is wrong."""
    try:
        return parse_duration(raw)
    except InvalidRequest as exc:
        problems.add(path, str(exc))
        return None


def resources(problems: Problems, raw: Any) -> Resources:
    """The ``resources`` (the limits that are valid; the others unset)."""
    fields = mapping_fields(problems, "resources", raw, RESOURCE_FIELDS)
    if fields is None:
        return Resources()
    memory = _memory(problems, fields["memory"]) if "memory" in fields else None
    cpus = _cpus(problems, fields["cpus"]) if "cpus" in fields else None
    return Resources(memory_bytes=memory, cpus=cpus)


def _memory(problems: Problems, raw: Any) -> int | None:
    path = "resources.memory"
    if is_int(raw):
        size = int(raw)
    elif isinstance(raw, str):
        try:
            size = parse_size(raw)
        except InvalidRequest as exc:
            problems.add(path, str(exc))
            return None
    else:
        problems.add(path, f'must be a size such as "512M" or a number of bytes, not {kind(raw)}')
        return None
    if size < MIN_MEMORY:
        problems.add(path, f"{size} bytes is below Docker's minimum of {MIN_MEMORY} (6M)")
        return None
    return size


def _cpus(problems: Problems, raw: Any) -> float | None:
    path = "resources.cpus"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.add(path, f"must be a number, not {kind(raw)}")
        return None
    if not (math.isfinite(raw) and 0 < raw <= MAX_CPUS):
        problems.add(path, f"{raw} is out of range; give a number above 0, at most {MAX_CPUS:g}")
        return None
    return float(raw)


def component(problems: Problems, path: str, raw: Any, what: str) -> str | None:
    """A repo, branch, pipeline or input name, checked like a volume name's parts."""
    if not isinstance(raw, str):
        problems.add(path, f"must be a string, not {kind(raw)}")
        return None
    try:
        return check_component(raw, what)
    except InvalidName as exc:
        # The volume-name grammar the message ends with is noise in a spec.
        problems.add(path, str(exc).removesuffix(_GRAMMAR_SUFFIX))
        return None


def glob(problems: Problems, path: str, raw: Any) -> str | None:
    """An input's ``glob``; None when it is wrong."""
    if not isinstance(raw, str):
        problems.add(path, f"must be a string such as / or /*, not {kind(raw)}")
        return None
    try:
        split_glob(raw)
    except InvalidRequest as exc:
        problems.add(path, str(exc))
        return None
    return raw
