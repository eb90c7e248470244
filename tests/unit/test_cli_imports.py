"""What a one-call verb imports: the guard of issue 14's start-up target.

Every ``pfs`` verb is a new Python process, so what it imports is most of what it costs
(bench/cli_startup.py). A ``pfs repo list`` and a ``pfs log`` run in a fresh interpreter
against a scripted API socket; what they import beyond what the interpreter imports for
``python -c pass`` is counted and named, never timed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scripted_server import ScriptedServer, answer_with, json_answer

ROOT = Path(__file__).resolve().parents[2]
REPORT = (
    "import sys\n"
    "from pfs_volume.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    "sys.exit(code)\n"
)
"""A ``pfs`` process that names every module it imported on stderr."""

HEAVY = {
    "click",  # about 20 ms: argparse parses instead
    "typing",  # and dataclasses (which imports inspect, ast, dis, tokenize): names,
    "dataclasses",  # errors and the client use neither at run time
    "inspect",
    "pathlib",  # only the verbs that take a path import it
    "shutil",  # argparse's formatter asks it the terminal width; ours asks os
    "urllib.parse",  # with ipaddress: the client percent-encodes itself
    "ipaddress",
    "requests",
    "http.client",
    "ssl",
    "datetime",
    "threading",
    "importlib.metadata",  # --version prints pfs_volume.__version__
}
"""Modules that cost a one-call verb milliseconds it does not need."""

OWN = {
    "pfs_volume",
    "pfs_volume.cli",
    "pfs_volume.cli.argtypes",
    "pfs_volume.cli.client",
    "pfs_volume.cli.commands",
    "pfs_volume.cli.connection",
    "pfs_volume.cli.main",
    "pfs_volume.cli.options",
    "pfs_volume.cli.output",
    "pfs_volume.cli.routes",
    "pfs_volume.cli.tables",
    "pfs_volume.errors",
    "pfs_volume.names",
}
"""pfs's modules every client verb imports; the verb's own module comes on top."""

MOST_OTHERS = 43
"""The most modules of the standard library a one-call verb may add to what the
interpreter itself imports (argparse, json, socket, re and theirs: 41 on Python 3.11).
A new import that pulls in a tree of modules fails this; raise it only knowingly."""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Path]:
    body = {
        "repos": [{"name": "photos", "created": "2026-12-01T10:00:00Z", "description": ""}],
        "commits": [],
    }
    server = ScriptedServer(tmp_path / "api.sock", answer_with(json_answer(200, body)))
    yield server.path
    server.listener.close()


def _modules(*args: str) -> tuple[set[str], str]:
    """The modules ``pfs ARGS`` imported beyond ``python -c pass``, and its stdout."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", REPORT, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bare = subprocess.run(
        [sys.executable, "-c", "import sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=True,
    )
    return set(done.stderr.split()) - set(bare.stdout.split()), done.stdout


@pytest.mark.parametrize(
    ("args", "verb_module", "shows"),
    [
        (["repo", "list"], "pfs_volume.cli.repos", "photos"),
        (["log", "photos", "--limit", "50"], "pfs_volume.cli.commits", "COMMIT"),
    ],
    ids=["repo list", "log"],
)
def test_a_one_call_verb_imports_only_what_it_needs(
    api: Path, args: list[str], verb_module: str, shows: str
) -> None:
    added, out = _modules("--api", str(api), *args)
    assert shows in out
    assert not HEAVY & added, f"a one-call verb imports {sorted(HEAVY & added)}"
    own = {m for m in added if m.split(".")[0] == "pfs_volume"}
    assert own == OWN | {verb_module}, f"unexpected: {sorted(own ^ (OWN | {verb_module}))}"
    others = sorted(m for m in added if m.split(".")[0] != "pfs_volume")
    assert len(others) <= MOST_OTHERS, f"{len(others)} modules of the library: {others}"
