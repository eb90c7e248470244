"""``pfs ls``, ``pfs cat``, ``pfs get``, ``pfs put`` and ``pfs rm``: files of commits
and branches, without a container."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path
from typing import IO, cast

from pfs_volume.cli.argtypes import folder
from pfs_volume.cli.client import reading_answer
from pfs_volume.cli.commands import arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import note, print_commit, print_json, show, shown
from pfs_volume.cli.tables import table
from pfs_volume.cli.unpack import unpack
from pfs_volume.errors import PfsError
from pfs_volume.filenames import printable
from pfs_volume.names import DEFAULT_BRANCH, parse_repo_branch, parse_repo_ref

CHUNK = 1024 * 1024


@command("ls")
@arg("target", metavar="REPO@REF")
@arg("path", metavar="PATH", nargs="?", default="")
@JSON
def ls(target: str, path: str, as_json: bool) -> None:
    """List a folder of a commit (a symlink is listed with its target, not followed)."""
    repo_name, ref = parse_repo_ref(target)
    entries = api_client().list_files(repo_name, str(ref), path)
    if as_json:
        print_json(entries)
        return
    rows = []
    for e in entries:
        name = shown(e, "name")
        if e["kind"] == "symlink":
            name = f"{name} -> {shown(e, 'target')}"
        rows.append([name, e["kind"], e["size"], e["mode"]])
    print(table(["name", "type", "size", "mode"], rows))


@command("cat")
@arg("target", metavar="REPO@REF")
@arg("path")
def cat(target: str, path: str) -> None:
    """Write a regular file of a commit to standard output (streamed, any size)."""
    repo_name, ref = parse_repo_ref(target)
    if sys.stdout is None:  # pfs cat ... >&-
        raise PfsError("standard output is closed: there is nowhere to write the file")
    response = api_client().file_content(repo_name, str(ref), path)
    out = sys.stdout.buffer
    with reading_answer(f"the file {printable(path)} of {target}"):
        for chunk in response.iter_content(CHUNK):
            out.write(chunk)
    out.flush()


@command("get")
@arg("target", metavar="REPO@REF")
@arg("path", metavar="PATH", nargs="?", default="")
@arg(
    "-o",
    "--output",
    dest="dest",
    metavar="FOLDER",
    required=True,
    type=folder,
    help="Folder to write into (made if missing).",
)
def get(target: str, path: str, dest: Path) -> None:
    """Copy a folder (or file) of a commit into a local folder; symlinks stay symlinks
    (even ones pointing outside), and nothing is written outside the folder."""
    repo_name, ref = parse_repo_ref(target)
    response = api_client().file_tar(repo_name, str(ref), path)
    names = [p for p in path.split("/") if p not in ("", ".")]
    top = dest / (names[-1] if names else repo_name)
    try:
        with reading_answer(f"the tar of {target}"):
            report = unpack(cast(IO[bytes], response.raw), dest)
    except tarfile.ReadError as exc:  # the archive ended before its end marker
        raise PfsError(
            f"the answer was cut off: the tar of {target} ended part-way ({exc}); what was "
            f"written into {printable(str(dest))} so far stays there"
        ) from exc
    except (tarfile.TarError, OSError) as exc:
        raise PfsError(
            f"the copy into {printable(str(dest))} stopped part-way ({exc}); what was "
            "written so far stays there"
        ) from exc
    for line in report.skipped:
        note(f"pfs: skipped {line}")
    for line in report.refused:
        note(f"pfs: refused {line}")
    note(
        f"wrote {report.files} file(s), {report.symlinks} symlink(s) and {report.folders} "
        f"folder(s) to {printable(str(top))}"
    )
    if report.refused:
        raise PfsError(
            f"{len(report.refused)} entr(y/ies) refused: they would have written outside "
            f"{printable(str(dest))} or through a link"
        )


@command("put")
@arg("target", metavar="REPO/BRANCH")
@arg("path")
@arg("--message", "-m", default="", help="The commit message.")
@JSON
def put(target: str, path: str, message: str, as_json: bool) -> None:
    """Write standard input to PATH on a branch and commit it (no container needed)."""
    repo_name, name = parse_repo_branch(target)
    branch_name = name or DEFAULT_BRANCH
    if sys.stdin is None:  # pfs put ... <&-
        raise PfsError(
            "standard input is closed: give the file's bytes there (pfs put REPO/BRANCH "
            "PATH < FILE)"
        )
    result = api_client().put_file(repo_name, branch_name, path, sys.stdin.buffer, message)
    commit, changed = result["commit"], result["changed"]
    if changed:
        show({**commit, "changed": True}, as_json, f"committed {commit['id']}")
    else:
        show(
            {**commit, "changed": False},
            as_json,
            f"unchanged: {repo_name}/{branch_name} holds exactly that already; no commit "
            f"(head {commit['id']})",
        )


@command("rm")
@arg("target", metavar="REPO/BRANCH")
@arg("path")
@arg("-r", "--recursive", action="store_true", help="Remove a folder and what it holds.")
@arg("--message", "-m", default="", help="The commit message.")
@JSON
def rm(target: str, path: str, recursive: bool, message: str, as_json: bool) -> None:
    """Remove PATH from a branch and commit it (no container needed)."""
    repo_name, name = parse_repo_branch(target)
    result = api_client().remove_file(repo_name, name or DEFAULT_BRANCH, path, recursive, message)
    print_commit(result["commit"], as_json)
