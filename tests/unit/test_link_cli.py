"""The set-up puts ``pfs`` on PATH (``scripts/link-cli``, run by ``scripts/bootstrap``):
a link made where nothing is, kept where it is ours, and nothing else ever replaced."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK_CLI = ROOT / "scripts" / "link-cli"
OURS = ROOT / ".venv" / "bin" / "pfs"


def link_cli(link: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINK_CLI), str(link)], capture_output=True, text=True, timeout=60, check=False
    )


def test_bootstrap_puts_pfs_on_path_so_the_readme_examples_run(tmp_path: Path) -> None:
    link = tmp_path / "bin" / "pfs"
    env = {**os.environ, "PFS_CLI_LINK": str(link)}
    done = subprocess.run(
        [str(ROOT / "scripts" / "bootstrap")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(OURS)
    on_path = {**env, "PATH": f"{link.parent}:/usr/bin:/bin", "PFS_API": str(tmp_path / "none")}
    version = subprocess.run(
        ["pfs", "--version"], capture_output=True, text=True, timeout=60, check=True, env=on_path
    )
    assert version.stdout.startswith("pfs ")


def test_an_absent_link_is_made_and_ours_is_kept(tmp_path: Path) -> None:
    link = tmp_path / "pfs"
    assert link_cli(link).returncode == 0
    assert os.readlink(link) == str(OURS)
    again = link_cli(link)
    assert again.returncode == 0 and again.stderr == ""
    assert os.readlink(link) == str(OURS)


def test_another_program_or_another_checkouts_pfs_is_never_replaced(tmp_path: Path) -> None:
    program = tmp_path / "program" / "pfs"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\necho another pfs\n")
    other_link = tmp_path / "link" / "pfs"
    other_link.parent.mkdir()
    other_link.symlink_to("/elsewhere/.venv/bin/pfs")  # dangling, and not ours
    for link in (program, other_link):
        before = os.readlink(link) if link.is_symlink() else link.read_text()
        done = link_cli(link)
        assert done.returncode == 0
        assert "is not this checkout's pfs: left alone" in done.stderr
        after = os.readlink(link) if link.is_symlink() else link.read_text()
        assert after == before
