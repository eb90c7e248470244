"""What a datum's container is told about its paths (``/pfs/datum`` and the
environment), for names no shell list survives."""

from __future__ import annotations

import base64
import json
import os

import pytest

from pfs_volume.pipelines.datum_folder import datum_document, datum_environment
from pfs_volume.pipelines.datums import Datum

NAMES = ["my notes.txt", "new\nline", "-n", 'it\'s "q"', os.fsdecode(b"caf\xe9.txt")]


@pytest.mark.parametrize("name", NAMES)
def test_datum_json_gives_the_exact_bytes_of_any_name(name: str) -> None:
    datum = Datum((("text", name),), "f" * 64)
    document = json.loads(datum_document("map", "j1", datum))
    assert document["id"] == datum.id and document["job"] == "j1"
    [entry] = document["inputs"]
    exact = b"/pfs/in/text/" + os.fsencode(name)
    assert entry["name"] == "text"
    assert os.fsencode(entry["path"]) == exact
    assert base64.b64decode(entry["path_base64"]) == exact


def test_the_environment_holds_utf8_paths_only_and_no_space_separated_list() -> None:
    datum = Datum((("text", "my notes.txt"), ("raw-in", os.fsdecode(b"\xff"))), "f" * 64)
    env = datum_environment("j1", datum)
    assert env == {
        "PFS_JOB": "j1",
        "PFS_DATUM_ID": datum.id,
        "PFS_DATUM_TEXT": "/pfs/in/text/my notes.txt",
    }


def test_the_whole_input_is_its_mount_point() -> None:
    datum = Datum((("model", ""),), "f" * 64)
    assert datum_environment("j", datum)["PFS_DATUM_MODEL"] == "/pfs/in/model"
