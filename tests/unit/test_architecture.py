"""The structure DESIGN.md ("Layers") asks for, checked on the source itself.

The import contracts live in ``setup.cfg`` and are checked by import-linter; the rest are
rules an import graph cannot see: only ``pfs_volume/btrfs`` runs btrfs, nobody reaches
through the repos service into its parts, every error class lives in ``errors.py``, and
no module outgrows one job.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "pfs_volume", ROOT / "plugin"]
MAX_LINES = 450
# Declarative data, not logic: one long literal that mirrors the routes.
LONG_BY_DESIGN = {"pfs_volume/api/openapi.py"}
# The parts of the commit graph that only repos/ itself may reach through its front.
SERVICE_PARTS = {"pool", "store", "coordinator", "clock", "space", "commit_errors"}
BTRFS_COMMANDS = ("btrfs", "mkfs.btrfs")
ERROR_BASES = ("Error", "Exception", "Failed", "Lost")


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every source file as (path relative to the checkout, parsed tree)."""
    for top in SOURCES:
        for path in sorted(top.rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))


def test_the_import_contracts_hold() -> None:
    """Nothing imports upward, services never import flask, repos never imports
    cluster (the contracts in setup.cfg)."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint), str(ROOT / "setup.cfg"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_only_the_btrfs_package_runs_btrfs() -> None:
    """No command line starting with btrfs, and no ioctl, outside pfs_volume/btrfs."""
    found = []
    for name, tree in modules():
        if name.startswith("pfs_volume/btrfs/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
                first = node.elts[0]
                if isinstance(first, ast.Constant) and first.value in BTRFS_COMMANDS:
                    found.append(f"{name}:{node.lineno} runs {first.value}")
            if isinstance(node, ast.Attribute) and node.attr == "ioctl":
                found.append(f"{name}:{node.lineno} calls ioctl")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "fcntl"
                and any(alias.name == "ioctl" for alias in node.names)
            ):
                found.append(f"{name}:{node.lineno} imports ioctl")
    assert not found, "\n".join(found)


def test_nobody_reaches_through_the_repos_service() -> None:
    """Outside repos/, no ``repos.pool``, ``repos.store``, ``repos.coordinator``,
    ``repos.clock`` or ``repos._private``: a component gets what it needs from daemon.py
    or from a RepoService method."""
    found = []
    for name, tree in modules():
        if name.startswith("pfs_volume/repos/"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            owner_name = (
                owner.id
                if isinstance(owner, ast.Name)
                else owner.attr
                if isinstance(owner, ast.Attribute)
                else None
            )
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if owner_name == "repos" and (node.attr in SERVICE_PARTS or private):
                found.append(f"{name}:{node.lineno} repos.{node.attr}")
    assert not found, "\n".join(found)


def test_cluster_never_sees_the_repos_service_or_the_pool() -> None:
    """cluster/ touches the pool through the parts of repos/ and the MetadataStore that
    the daemon hands it, never through RepoService nor the BtrfsPool itself."""
    found = [
        f"{name}:{node.lineno}"
        for name, tree in modules()
        if name.startswith("pfs_volume/cluster/")
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id in ("RepoService", "BtrfsPool"))
        or (isinstance(node, ast.alias) and node.name in ("RepoService", "BtrfsPool"))
    ]
    assert not found, "\n".join(found)


def test_every_error_class_lives_in_errors_py() -> None:
    """Public exception classes are defined in pfs_volume/errors.py only (a module's
    private ones, never raised past it, may stay with it)."""
    found = []
    known = _errors()
    for name, tree in modules():
        if name == "pfs_volume/errors.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [
                b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
            ]
            if any(b.endswith(ERROR_BASES) or b in known for b in bases):
                found.append(f"{name}:{node.lineno} class {node.name}")
    assert not found, "\n".join(found)


def _errors() -> set[str]:
    """The names of the classes errors.py defines."""
    tree = ast.parse((ROOT / "pfs_volume" / "errors.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def test_no_module_outgrows_one_job() -> None:
    """Every module is at most MAX_LINES lines, declarative data apart."""
    long = []
    for top in SOURCES:
        for path in sorted(top.rglob("*.py")):
            name = str(path.relative_to(ROOT))
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES and name not in LONG_BY_DESIGN:
                long.append(f"{name}: {lines} lines")
    assert not long, "\n".join(long)
