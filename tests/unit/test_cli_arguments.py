"""What ``pfs`` says about a bad command line: exit status 2, the usage of the command
at fault and what was wrong with what is accepted; and its help. No daemon is needed:
each mistake is caught before the API is called."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfs_volume import __version__
from pfs_volume.cli.main import VERBS
from tests.cli_run import invoke

NOWHERE = ["--api", "/nonexistent/pfs.sock"]


@pytest.mark.parametrize(
    ("args", "usage", "says"),
    [
        (
            ["log", "r", "--limit", "0"],
            "pfs log",
            "argument --limit: 0 is too small; give at least 1",
        ),
        (
            ["log", "r", "--limit", "x"],
            "pfs log",
            "argument --limit: 'x' is not a whole number; give one of at least 1",
        ),
        (["log"], "pfs log", "the following arguments are required: REPO[/BRANCH]|REPO@REF"),
        (
            ["gc", "r", "--keep-last", "-1"],
            "pfs gc",
            "argument --keep-last: -1 is too small; give at least 0",
        ),
        (
            ["wait", "r@m", "--timeout", "soon"],
            "pfs wait",
            "argument --timeout: 'soon' is not a number of seconds; give one like 30 or 2.5",
        ),
        (
            ["job", "wait", "j", "--timeout", "-1"],
            "pfs job wait",
            "argument --timeout: -1 is not 0 or more seconds",
        ),
        (
            ["merge", "r/a", "--into", "b", "--strategy", "mine"],
            "pfs merge",
            "argument --strategy: invalid choice: 'mine' (choose from 'ours', 'theirs')",
        ),
        (
            ["repo", "create", "r", "--replicas", "two"],
            "pfs repo create",
            "argument --replicas: 'two' is not a whole number",
        ),
        (["repo", "list", "--limit", "3"], "pfs repo list", "unrecognized arguments: --limit 3"),
        # No abbreviations: a shortened option is unknown, never taken for a longer one.
        (["log", "r", "--lim", "3"], "pfs log", "unrecognized arguments: --lim 3"),
        (["--ap", "/x", "repo", "list"], "pfs", "argument COMMAND: invalid choice: '/x'"),
        (
            ["repo", "lst"],
            "pfs repo",
            "argument COMMAND: invalid choice: 'lst' (choose from 'create', 'delete'",
        ),
        (
            ["bogus"],
            "pfs",
            "argument COMMAND: invalid choice: 'bogus' (choose from 'branch', 'cat'",
        ),
        (
            ["serve", "--log-level", "loud"],
            "pfs serve",
            "argument --log-level: 'loud' is not one of debug, info, warning, error",
        ),
        (
            ["branch", "delete", "photos"],
            "pfs branch delete",
            "'photos' names no branch; give REPO/BRANCH",
        ),
        (["diff", "a@x", "b@y"], "pfs diff", "both refs must name the same repo"),
    ],
)
def test_a_bad_command_line_says_what_is_wrong(args: list[str], usage: str, says: str) -> None:
    result = invoke([*NOWHERE, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"usage: {usage} "), result.stderr
    assert f"{usage}: error: {says}" in result.stderr, result.stderr
    assert result.stdout == "" and result.exception is None


def test_a_path_argument_is_checked_for_what_it_must_be(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    result = invoke([*NOWHERE, "get", "r@m", "-o", str(a_file)])
    assert result.exit_code == 2 and f"'{a_file}' is a file; give a folder" in result.stderr
    result = invoke([*NOWHERE, "repo", "export", "r", "-o", str(tmp_path)])
    assert result.exit_code == 2 and f"'{tmp_path}' is a folder; give a file" in result.stderr
    result = invoke([*NOWHERE, "pipeline", "create", "-f", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "there is no file" in result.stderr
    result = invoke([*NOWHERE, "repo", "import", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder; give a file" in result.stderr


def test_an_environment_default_is_checked_as_the_option_would_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PFS_LOG_LEVEL", "loud")
    result = invoke(["serve"])
    assert result.exit_code == 2 and "'loud' is not one of debug" in result.stderr
    monkeypatch.setenv("PFS_API", "/nonexistent/from-env.sock")
    result = invoke(["repo", "list"])
    assert result.exit_code == 1
    assert "cannot reach the pfs daemon at /nonexistent/from-env.sock" in result.stderr


def test_a_verb_that_cannot_run_exits_1_with_the_message() -> None:
    result = invoke([*NOWHERE, "log", "photos/dev/x"])
    assert result.exit_code == 1 and result.stderr.startswith("pfs: error: ")
    assert "is not REPO or REPO/BRANCH" in result.stderr and "usage" not in result.stderr


def test_the_help_lists_every_verb_with_its_first_sentence() -> None:
    for args in (["--help"], ["-h"], []):
        result = invoke(args)
        assert result.exit_code == 0, result.output
        listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")}
        assert set(VERBS) <= listed
    assert "Show commits, newest first," in invoke(["--help"]).stdout


def test_a_group_lists_its_commands_and_hides_the_hidden_one() -> None:
    result = invoke(["repo", "--help"])
    assert result.exit_code == 0
    for word in ("create", "list", "inspect", "delete", "export", "import"):
        assert f"    {word} " in result.stdout
    commit = invoke(["commit", "--help"]).stdout
    assert "    inspect " in commit and "    create " not in commit


def test_commit_without_a_subcommand_commits_also_with_the_options_first() -> None:
    for args in (["commit", "r/b", "-m", "x"], ["commit", "-m", "x", "r/b"]):
        result = invoke([*NOWHERE, *args])
        assert result.exit_code == 1 and "cannot reach the pfs daemon" in result.stderr


def test_version_reads_no_verb() -> None:
    result = invoke([*NOWHERE, "--version"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"pfs {__version__} (CLI)\ndaemon: not reachable at ")


def test_every_verb_is_the_command_of_its_name() -> None:
    from pfs_volume.cli.commands import Group, Verb
    from pfs_volume.cli.main import PFS

    for name in VERBS:
        result = invoke([name, "--help"])
        assert result.exit_code == 0 and result.stdout.startswith(f"usage: pfs {name} ")
        command = PFS.children[name]
        assert isinstance(command, Verb | Group) and command.name == name
