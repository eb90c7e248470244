"""The canonical form of a spec: its JSON (every default written out), its
fingerprint, and stored specs read back."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from pfs_volume.pipelines.spec.model import PipelineSpec
from pfs_volume.pipelines.spec.validate import validate


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


STORED_CACHE = 1024
"""Stored specs kept validated (``stored_spec``); the cache starts afresh past this."""
_stored: dict[bytes, PipelineSpec] = {}
_stored_lock = threading.Lock()


def stored_spec(body: str) -> PipelineSpec:
    """The spec of a stored pipeline document (its JSON text, ``{"spec": ...}``),
    validated once per distinct text: the trigger loop and every writable mount read
    every pipeline, and a spec of up to ``MAX_SPEC_BYTES`` takes up to a third of a
    second to validate. Raises what ``validate`` and ``json.loads`` raise, and KeyError."""
    key = hashlib.sha256(body.encode("utf-8", "surrogatepass")).digest()
    with _stored_lock:
        found = _stored.get(key)
    if found is not None:
        return found
    spec = validate(json.loads(body)["spec"])
    with _stored_lock:
        if len(_stored) >= STORED_CACHE:
            _stored.clear()
        _stored[key] = spec
    return spec
