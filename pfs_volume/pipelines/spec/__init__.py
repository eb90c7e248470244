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

from pfs_volume.pipelines.spec.canonical import STORED_CACHE, fingerprint, spec_to_json, stored_spec
from pfs_volume.pipelines.spec.load import load_spec, parse_spec
from pfs_volume.pipelines.spec.model import (
    COMBINATIONS,
    DEFAULT_GLOB,
    INPUT_FIELDS,
    INPUT_ROOT,
    MAX_CPUS,
    MAX_INPUTS,
    MAX_PARALLELISM,
    MAX_PROBLEMS,
    MAX_SPEC_BYTES,
    MAX_TIMEOUT,
    MAX_TRIES,
    MIN_MEMORY,
    OUTPUT_FIELDS,
    OUTPUT_ROOT,
    RESOURCE_FIELDS,
    SPEC_FIELDS,
    TRANSFORM_FIELDS,
    Combine,
    InputSpec,
    OutputSpec,
    PipelineSpec,
    Resources,
    Transform,
)
from pfs_volume.pipelines.spec.validate import ContextCheck, SpecOutline, validate
from pfs_volume.pipelines.spec.values import parse_duration, split_glob

__all__ = [
    "COMBINATIONS",
    "DEFAULT_GLOB",
    "INPUT_FIELDS",
    "INPUT_ROOT",
    "MAX_CPUS",
    "MAX_INPUTS",
    "MAX_PARALLELISM",
    "MAX_PROBLEMS",
    "MAX_SPEC_BYTES",
    "MAX_TIMEOUT",
    "MAX_TRIES",
    "MIN_MEMORY",
    "OUTPUT_FIELDS",
    "OUTPUT_ROOT",
    "RESOURCE_FIELDS",
    "SPEC_FIELDS",
    "STORED_CACHE",
    "TRANSFORM_FIELDS",
    "Combine",
    "ContextCheck",
    "InputSpec",
    "OutputSpec",
    "PipelineSpec",
    "Resources",
    "SpecOutline",
    "Transform",
    "fingerprint",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "spec_to_json",
    "split_glob",
    "stored_spec",
    "validate",
]
