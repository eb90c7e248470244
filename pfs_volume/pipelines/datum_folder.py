"""What tells a datum's container which paths are its datum: the ``/pfs/datum`` folder
(``datum.json`` and ``paths``) and the ``PFS_DATUM_*`` variables.

* ``/pfs/datum/datum.json``: ``{"id", "job", "pipeline", "inputs": [{"name", "path",
  "path_base64"}]}``, ``path`` absolute in the container. A name that is not UTF-8 is
  written as Python's ``json`` writes it (lone surrogates, ``\\udcXX``, one per byte that
  is not UTF-8); ``path_base64`` always holds the exact bytes.
* ``/pfs/datum/paths``: the absolute paths, each ended by a NUL byte (``xargs -0``).
* ``PFS_DATUM_<INPUT>`` (the input's name upper-cased, other characters ``_``): its one
  absolute path, set only when the path is UTF-8 (Docker's API is JSON); quote it.
  ``PFS_DATUM_ID`` and ``PFS_JOB`` are the datum's and the job's ids, ``PFS_DATUM_TRY``
  the try (1 to the spec's ``datum_tries``).

There is no space-separated list of paths: a name with a space, a newline or a leading
dash would split or turn into an option in the shell loop such a list invites. The folder
is there because Docker 20.10 cannot mount a volume's sub-path.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pfs_volume import safepath
from pfs_volume.errors import PfsError
from pfs_volume.pipelines.datums import Datum

log = logging.getLogger(__name__)

DATUM_FOLDER = "/pfs/datum"
"""Where a datum's container finds which paths are its datum."""
RESERVED_VARIABLES = ("PFS_DATUM_ID", "PFS_DATUM_TRY")


def container_paths(datum: Datum) -> list[tuple[str, str]]:
    """Each input of a datum with its absolute path in the container."""
    return [
        (name, f"/pfs/in/{name}/{path}" if path else f"/pfs/in/{name}")
        for name, path in datum.parts
    ]


def datum_document(pipeline: str, job_id: str, datum: Datum) -> bytes:
    """The ``/pfs/datum/datum.json`` of a datum (see the module's docstring)."""
    inputs = [
        {
            "name": name,
            "path": path,
            "path_base64": base64.b64encode(os.fsencode(path)).decode("ascii"),
        }
        for name, path in container_paths(datum)
    ]
    document = {"id": datum.id, "job": job_id, "pipeline": pipeline, "inputs": inputs}
    return (json.dumps(document, indent=2) + "\n").encode("ascii")


def datum_environment(job_id: str, datum: Datum) -> dict[str, str]:
    """``PFS_JOB``, ``PFS_DATUM_ID`` and ``PFS_DATUM_<INPUT>`` for each input whose
    path is UTF-8 (Docker's API is JSON: other bytes cannot pass)."""
    env = {"PFS_JOB": job_id, "PFS_DATUM_ID": datum.id}
    paths = container_paths(datum)
    shared = variable_clashes([name for name, _path in paths])
    for name, path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            continue
        if name not in shared:  # a spec stored before such specs were refused
            env[datum_variable(name)] = path
    return env


def datum_variable(name: str) -> str:
    """The variable holding input ``name``'s datum path: ``PFS_DATUM_<NAME>``."""
    return "PFS_DATUM_" + "".join(ch if ch.isalnum() else "_" for ch in name).upper()


def variable_clashes(names: Iterable[str]) -> dict[str, str]:
    """Input names whose ``PFS_DATUM_<NAME>`` another input's (``a-b``, ``a_b``, ``A.B``)
    or pfs's own (``id``, ``try``) is too, each with that other input's name or the
    variable; the later of two inputs is named."""
    first: dict[str, str] = {}
    found: dict[str, str] = {}
    for name in names:
        variable = datum_variable(name)
        if variable in RESERVED_VARIABLES:
            found[name] = variable
        elif variable in first and first[variable] != name:
            found[name] = first[variable]
            found.setdefault(first[variable], name)
        else:
            first.setdefault(variable, name)
    return found


def write_datum_folder(root: Path, pipeline: str, job_id: str, datum: Datum) -> Path:
    """Write a datum's ``/pfs/datum`` folder under its job's scratch and return it.

    Args:
        root: the pool's ``pipelines`` folder (``<root>/<pipeline>/scratch/<job>``
            holds the folder).
    Written by descriptor, never following a link (the daemon is root)."""
    name = f"{datum.id}.datum"
    body = datum_document(pipeline, job_id, datum)
    paths = b"".join(os.fsencode(path) + b"\0" for _name, path in container_paths(datum))
    with (
        safepath.closing(safepath.open_root(root)) as opened,
        safepath.closing(safepath.open_folder(opened, (pipeline, "scratch", job_id))) as parent,
    ):
        if safepath.lstat_at(parent, name) is not None:
            safepath.remove_tree(parent, name)
        with safepath.closing(safepath.make_folders(parent, (name,))) as folder:
            for file_name, data in (("datum.json", body), ("paths", paths)):
                fd = os.open(
                    file_name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o644,
                    dir_fd=folder,
                )
                with open(fd, "wb") as out:
                    out.write(data)
    return root / pipeline / "scratch" / job_id / name


def drop_datum_folder(root: Path, pipeline: str, job_id: str, datum_id: str) -> None:
    """Remove a datum's ``/pfs/datum`` folder (a failure is logged, not raised)."""
    try:
        with (
            safepath.closing(safepath.open_root(root)) as opened,
            safepath.closing(safepath.open_folder(opened, (pipeline, "scratch", job_id))) as parent,
        ):
            if safepath.lstat_at(parent, f"{datum_id}.datum") is not None:
                safepath.remove_tree(parent, f"{datum_id}.datum")
    except (OSError, PfsError) as exc:
        log.warning("job=%s datum=%s datum folder not removed: %s", job_id, datum_id, exc)
