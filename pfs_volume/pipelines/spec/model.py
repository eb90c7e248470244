"""The pipeline spec as data: its frozen dataclasses and the limits of its grammar
(the grammar itself is described in ``pfs_volume.pipelines.spec``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pfs_volume.names import DEFAULT_BRANCH

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
