"""The pfs CLI against a real API socket: tables, --json, errors."""

from __future__ import annotations

import json
from pathlib import Path

from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke


def pfs(api: str, *args: str) -> tuple[int, str, str]:
    result = invoke(["--api", api, *args])
    return result.exit_code, result.stdout, result.stderr


def test_log_table_and_json(api_socket: str) -> None:
    code, out, _ = pfs(api_socket, "log", "photos")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["COMMIT", "PARENTS", "BRANCH"]
    assert len(lines) == 3 and "auto-commit on last unmount of pfs/photos (mount m2)" in lines[1]
    code, out, _ = pfs(api_socket, "log", "photos", "--json")
    commits = json.loads(out)
    assert [c["message"][-10:] for c in commits] == ["(mount m2)", "(mount m1)"]
    code, out, _ = pfs(api_socket, "log", "photos/dev", "--json", "--limit", "1")
    assert [c["branch"] for c in json.loads(out)] == ["dev"]
    code, out, _ = pfs(api_socket, "log", "photos@master~1", "--json")
    assert [c["id"] for c in json.loads(out)] == [commits[1]["id"]]


def test_repo_branch_and_commit_verbs(api_socket: str) -> None:
    code, out, _ = pfs(api_socket, "repo", "list")
    assert code == 0 and out.splitlines()[1].startswith("photos")
    code, out, _ = pfs(api_socket, "repo", "inspect", "photos")
    assert "Commits:  3" in out and "dev" in out
    code, out, _ = pfs(api_socket, "branch", "list", "photos", "--json")
    assert sorted(b["name"] for b in json.loads(out)) == ["dev", "master"]
    master = next(b["head"] for b in json.loads(out) if b["name"] == "master")
    code, out, _ = pfs(api_socket, "commit", "inspect", f"photos@{master[:8]}", "--json")
    assert json.loads(out)["id"] == master
    code, out, _ = pfs(api_socket, "commit", "inspect", "photos@master")
    assert f"Id:       {master}" in out


def test_errors_exit_1_with_the_message(api_socket: str, tmp_path: Path) -> None:
    code, _, err = pfs(api_socket, "repo", "inspect", "nope")
    assert code == 1 and err.startswith("pfs: error: there is no repo 'nope'")
    code, _, err = pfs(api_socket, "commit", "inspect", "photos")
    assert code == 1 and "is not REPO@REF" in err
    code, _, err = pfs(str(tmp_path / "absent.sock"), "repo", "list")
    assert code == 1 and "cannot reach the pfs daemon" in err
    code, _, err = pfs(api_socket, "repo", "delete", "photos")
    assert code == 2 and "needs --yes" in err
    assert pfs(api_socket, "repo", "list", "--json")[1].count('"photos"') == 1


def test_repo_delete(api_socket: str) -> None:
    code, out, _ = pfs(api_socket, "repo", "delete", "photos", "--yes")
    assert code == 0 and out.strip() == "deleted repo photos"
    assert json.loads(pfs(api_socket, "repo", "list", "--json")[1]) == []


def test_mount_list_and_release(api_socket: str, volumes: VolumeService) -> None:
    path = volumes.mount("pfs/photos", "orphaned")
    (path / "late").write_text("x")
    code, out, _ = pfs(api_socket, "mount", "list")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["orphaned", "pfs/photos", "photos"]
    code, out, _ = pfs(api_socket, "mount", "release", "orphaned")
    assert code == 0 and out.strip() == "released mount orphaned"
    assert json.loads(pfs(api_socket, "mount", "list", "--json")[1]) == []
    assert len(json.loads(pfs(api_socket, "log", "photos", "--json")[1])) == 3
    code, _, err = pfs(api_socket, "log", "photos/dev/x")
    assert code == 1 and "is not REPO or REPO/BRANCH" in err


def test_repo_branch_reset_and_commit_verbs(api_socket: str, volumes: VolumeService) -> None:
    code, out, _ = pfs(api_socket, "repo", "create", "notes", "-d", "my notes")
    assert code == 0 and out.strip() == "created repo notes"
    listed = {r["name"]: r for r in json.loads(pfs(api_socket, "repo", "list", "--json")[1])}
    assert listed["notes"]["description"] == "my notes"
    code, out, _ = pfs(api_socket, "branch", "create", "photos/old", "--from", "master~1")
    assert code == 0 and out.startswith("created branch photos/old at ")
    path = volumes.mount("pfs/photos", "c1")
    (path / "z").write_text("z")
    code, out, _ = pfs(api_socket, "commit", "photos/master", "-m", "checkpoint")
    assert code == 0 and out.startswith("committed ")
    code, out, _ = pfs(api_socket, "commit", "photos", "-m", "again")
    assert code == 0 and out.strip() == "nothing changed: no commit made"
    volumes.unmount("pfs/photos", "c1")
    log = json.loads(pfs(api_socket, "log", "photos", "--json")[1])
    assert log[0]["message"] == "checkpoint"
    code, out, _ = pfs(api_socket, "reset", "photos/master", "master~1")
    assert code == 0 and "->" in out
    assert json.loads(pfs(api_socket, "log", "photos", "--json")[1])[0]["id"] == log[1]["id"]
    code, out, _ = pfs(api_socket, "branch", "delete", "photos/old")
    assert code == 0 and out.strip() == "deleted branch photos/old"
    code, _, err = pfs(api_socket, "branch", "delete", "photos")
    assert code == 2 and "names no branch" in err
    code, out, _ = pfs(api_socket, "commit", "inspect", f"photos@{log[0]['id']}")
    assert code == 0 and "checkpoint" in out


def test_files_verbs(api_socket: str, tmp_path: Path) -> None:
    result = invoke(["--api", api_socket, "put", "photos/master", "/x/y.txt"], input=b"hello\n")
    assert result.exit_code == 0 and result.stdout.startswith("committed ")
    code, out, _ = pfs(api_socket, "ls", "photos@master", "x")
    assert out.splitlines()[1].split() == ["y.txt", "file", "6", "644"]
    result = invoke(["--api", api_socket, "cat", "photos@master", "x/y.txt"])
    assert result.exit_code == 0 and result.stdout_bytes == b"hello\n"
    code, _, err = pfs(api_socket, "get", "photos@master", "x", "-o", str(tmp_path / "out"))
    assert code == 0 and (tmp_path / "out" / "x" / "y.txt").read_text() == "hello\n"
    code, out, _ = pfs(api_socket, "rm", "photos", "x/y.txt")
    assert code == 0 and out.startswith("committed ")
    code, _, err = pfs(api_socket, "cat", "photos@master", "x/y.txt")
    assert code == 1 and "has no /x/y.txt" in err
    code, _, err = pfs(api_socket, "cat", "photos@master~1", "../y")
    assert code == 1 and "climbs out" in err


def test_gc_verb(api_socket: str) -> None:
    code, out, _ = pfs(api_socket, "gc", "photos", "--keep-last", "1")
    assert code == 0 and out.startswith("pruned 1 commit(s), about ")
    code, out, _ = pfs(api_socket, "log", "photos")
    assert out.splitlines()[2].split()[1] == "(pruned)"
    code, _, err = pfs(api_socket, "gc", "photos")
    assert code == 1 and "needs --keep-last N or --older-than" in err


def test_fsck_verb(api_socket: str, volumes: VolumeService) -> None:
    # No size meter runs here (the daemon starts it): the commits have no size yet.
    code, out, _ = pfs(api_socket, "fsck")
    line = out.splitlines()[1]
    assert code == 1 and line.startswith("photos: unmeasured-commit: 3 commit(s) have no size")
    assert line.endswith("[--repair: measured]")
    code, out, _ = pfs(api_socket, "fsck", "--repair")
    assert code == 0 and out.splitlines()[1].endswith("[measured]")
    code, out, _ = pfs(api_socket, "fsck")
    assert code == 0 and out == "checked 1 repo(s), 3 commit(s), 3 snapshot(s): 0 problem(s)\n"
    stray = volumes.repos.commit_path("photos", "e" * 32)
    stray.parent.joinpath("partial").mkdir()  # not a subvolume: not fsck's business
    volumes.repos.pool.create_subvolume(stray)  # writable: a receive cut off
    code, out, _ = pfs(api_socket, "fsck")
    assert code == 1 and out.splitlines()[1].startswith("photos: partial-receive: ")
    assert out.splitlines()[1].endswith("[--repair: deleted]") and stray.exists()
    code, out, _ = pfs(api_socket, "fsck", "--repair", "--json")
    assert code == 0 and json.loads(out)["problems"][0]["repaired"] and not stray.exists()


def test_export_and_import_verbs(api_socket: str, tmp_path: Path) -> None:
    dump = tmp_path / "photos.pfs"
    code, _, err = pfs(api_socket, "repo", "export", "photos", "-o", str(dump))
    assert code == 0 and "exported repo photos" in err and dump.stat().st_size > 0
    code, out, _ = pfs(api_socket, "repo", "import", str(dump), "--as", "photos2")
    assert code == 0 and out.strip().endswith("imported repo photos2")
    original = json.loads(pfs(api_socket, "log", "photos", "--json")[1])
    copy = json.loads(pfs(api_socket, "log", "photos2", "--json")[1])
    assert [c["id"] for c in copy] == [c["id"] for c in original]
    code, _, err = pfs(api_socket, "repo", "import", str(dump), "--as", "photos2")
    assert code == 1 and "exists already" in err
