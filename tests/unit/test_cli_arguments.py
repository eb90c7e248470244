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


def _parsed(args: list[str], *arguments: tuple[tuple[str, ...], dict[str, object]]) -> dict:
    """What a verb with ``arguments`` is called with for ``pfs v ARGS``."""
    from pfs_volume.cli.commands import Group, Verb, run

    seen: dict = {}

    def v(**values: object) -> None:
        seen.update(values)

    verb = Verb(v)
    verb.arguments = list(arguments)
    assert run(Group("pfs", "The root.", {"v": verb}), ["v", *args]) == 0
    return seen


GET_LIKE = (
    (("target",), {}),
    (("path",), {"nargs": "?", "default": ""}),
    (("-o", "--output"), {"dest": "dest"}),
    (("-r", "--recursive"), {"action": "store_true"}),
    (("--message", "-m"), {"default": ""}),
)


@pytest.mark.parametrize(
    ("args", "values"),
    [
        # An option between positionals, as click took it (argparse alone gave PATH
        # nothing and refused the word after the option).
        (["r@m", "-o", "d", "p"], ("r@m", "p", "d", False, "")),
        (["r@m", "-o", "d", "--", "-x"], ("r@m", "-x", "d", False, "")),
        (["-o", "d", "--", "r@m", "-x"], ("r@m", "-x", "d", False, "")),
        (["r@m", "-r", "p", "-m", "x"], ("r@m", "p", None, True, "x")),
        # A value is the next word, whatever it starts with (argparse refused these).
        (["r@m", "-m", "-wip", "p"], ("r@m", "p", None, False, "-wip")),
        (["r@m", "--message", "--json", "p"], ("r@m", "p", None, False, "--json")),
        (["r@m", "-rm", "-x"], ("r@m", "", None, True, "-x")),
        (["r@m", "-m", ""], ("r@m", "", None, False, "")),
        (["r@m", "-m", "a=b"], ("r@m", "", None, False, "a=b")),
        (["r@m", "-mx", "-1"], ("r@m", "-1", None, False, "x")),
        (["r@m", "--message=-x", "-"], ("r@m", "-", None, False, "-x")),
        # argparse's rule, kept: a dash word with a space in it that is no option is a
        # positional.
        (["r@m", "-a b", "-m", "x y"], ("r@m", "-a b", None, False, "x y")),
        (["r@m", "--message=x y", "--a b"], ("r@m", "--a b", None, False, "x y")),
    ],
)
def test_options_go_anywhere_and_take_the_next_word(
    args: list[str], values: tuple[object, ...]
) -> None:
    seen = _parsed(args, *GET_LIKE)
    assert (seen["target"], seen["path"], seen["dest"], seen["recursive"], seen["message"]) == (
        values
    )


def test_options_between_positionals_and_dashed_values_reach_the_verb() -> None:
    for args in (
        ["get", "r@m", "-o", "/nonexistent/out", "docs"],
        ["ls", "r@m", "--json", "docs"],
        ["diff", "r@a", "--json", "r@b"],
        ["commit", "r/b", "-m", "-wip"],
        ["put", "r/b", "--message", "--draft", "--", "-x"],
        ["--", "repo", "list"],
        ["repo", "--", "list"],
    ):
        result = invoke([*NOWHERE, *args])
        assert result.exit_code == 1, (args, result.output)
        assert "cannot reach the pfs daemon" in result.stderr, (args, result.output)


def test_a_name_that_looks_like_an_option_is_named_with_what_to_do() -> None:
    result = invoke([*NOWHERE, "cat", "r@m", "-x"])
    assert result.exit_code == 2 and result.exception is None
    assert "no such option: -x (an argument that starts with '-' goes after '--')" in (
        result.stderr
    )
    # argparse (3.11) gave the verb an empty list for a "--" after "--": a traceback.
    result = invoke([*NOWHERE, "cat", "r@m", "--", "--"])
    assert result.exit_code == 2 and result.exception is None, result.output
    assert "'--' cannot be a name here; write it as ./--" in result.stderr


def test_an_empty_environment_variable_is_the_default_as_under_click(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pfs_volume.cli.serve import serve

    for name in ("PFS_STATE_DIR", "PFS_REPLICAS", "PFS_LOG_LEVEL", "PFS_REPAIR_SWEEP"):
        monkeypatch.setenv(name, "")
    seen = _parsed([], *serve.arguments)
    assert seen["state_dir"] == Path("/var/lib/pfs")  # not Path(""): the current folder
    assert (seen["replicas"], seen["log_level"], seen["repair_sweep"]) == (2, "info", 600.0)
    monkeypatch.setenv("PFS_API", "")
    result = invoke(["--help"])
    assert "default /run/pfs/api.sock" in result.stdout


def test_a_reader_that_goes_away_ends_pfs_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pfs repo list | head``: exit 1 and nothing more, as click did (not a
    BrokenPipeError traceback)."""
    import io
    import sys

    from pfs_volume.cli import repos
    from pfs_volume.cli.main import main

    class ClosedPipe(io.TextIOBase):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    class Client:
        def list_repos(self) -> list[dict[str, str]]:
            return [{"name": "r", "created": "2026-01-01T00:00:00Z", "description": ""}]

    monkeypatch.setattr(repos, "api_client", Client)
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    monkeypatch.setattr(sys, "stderr", errors)
    for args in (["repo", "list"], ["repo", "list", "--json"]):
        assert main(args) == 1
    assert errors.getvalue() == ""


def test_an_empty_file_or_folder_name_is_refused() -> None:
    """``-o "$OUT"`` with OUT unset: Path("") is the current folder, so get wrote into
    it and export failed with a traceback (IsADirectoryError)."""
    for args, kind in (
        (["get", "r@m", "-o", ""], "folder"),
        (["repo", "export", "r", "-o", ""], "file"),
        (["repo", "import", ""], "file"),
        (["pipeline", "create", "-f", ""], "file"),
    ):
        result = invoke([*NOWHERE, *args])
        assert result.exit_code == 2 and result.exception is None, (args, result.output)
        assert f"the name is empty; give a {kind}" in result.stderr, (args, result.output)


def test_an_export_file_that_cannot_be_written_is_said_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pfs_volume.cli import transfer

    class Answer:
        def iter_content(self, size: int) -> list[bytes]:
            return [b"x"]

    class Client:
        def export_repo(self, name: str) -> Answer:
            return Answer()

    monkeypatch.setattr(transfer, "api_client", Client)
    missing = tmp_path / "missing" / "r.pfs"
    result = invoke(["repo", "export", "r", "-o", str(missing)])
    assert result.exit_code == 1 and result.exception is None, result.output
    assert f"pfs: error: cannot write the export of repo r to {missing}: No such file" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "args",
    [
        ["pipeline", "inspect", "p\udce9"],
        ["job", "inspect", "j\udce9"],
        ["mount", "release", "m\udce9"],
        ["datum", "inspect", "j", "d\udce9"],
    ],
)
def test_a_name_that_is_not_utf8_is_said_not_a_traceback(args: list[str]) -> None:
    """The shell passes any bytes; a name, id or option value that is not UTF-8 (a lone
    surrogate in Python) cannot go into a URL: an error naming it, not a
    UnicodeEncodeError traceback (click's CLI had one too)."""
    result = invoke([*NOWHERE, *args])
    assert result.exit_code == 1 and result.exception is None, result.output
    assert "\\xe9' holds bytes that are not UTF-8; names, ids and option values" in (result.stderr)


def test_a_closed_standard_stream_is_said_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pfs put R/B PATH <&-`` and ``pfs cat R@REF PATH >&-``: Python's stream is None."""
    import io
    import sys

    from pfs_volume.cli.main import main

    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)
    monkeypatch.setattr(sys, "stdin", None)
    assert main([*NOWHERE, "put", "r/b", "p"]) == 1
    assert "pfs: error: standard input is closed: give the file's bytes there" in (
        errors.getvalue()
    )
    monkeypatch.setattr(sys, "stdout", None)
    assert main([*NOWHERE, "cat", "r@m", "p"]) == 1
    assert "pfs: error: standard output is closed" in errors.getvalue()


@pytest.mark.parametrize(
    "address", ["http://[::1", "http://pfs:99999", "http://pfs:x", "http://\udce9"]
)
def test_an_api_url_no_connection_can_be_made_to_is_refused(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError (or UnicodeError) of the URL was a traceback at the first call."""
    for args in (["--api", address, "repo", "list"], ["repo", "list"]):
        monkeypatch.setenv("PFS_API", address)
        result = invoke(args)
        assert result.exit_code == 2 and result.exception is None, result.output
        assert "pfs: error: argument --api: " in result.stderr
        assert "is not a URL the daemon can be reached at" in result.stderr
