"""contrib/systemd: the unit runs ``pfs serve`` where the set-up puts it, before Docker,
restarted on failure, with its settings from the env file; every setting there is an
option ``pfs serve`` reads, with a value it accepts. systemd is not PID 1 here:
``systemd-analyze verify`` checks the unit's syntax, and the daemon's notifications are
tested in tests/integration/test_starting.py."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from pfs_volume.cli.commands import VERB, parser_of
from pfs_volume.cli.serve import serve

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "pfs.service"
ENV_FILE = ROOT / "contrib" / "systemd" / "pfs.env"
LINK = "/usr/local/bin/pfs"
"""Where scripts/link-cli puts the CLI by default."""


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def settings(commented_too: bool) -> dict[str, str]:
    """The env file's assignments (with the commented-out examples when asked)."""
    found = {}
    for line in ENV_FILE.read_text().splitlines():
        match = re.fullmatch(r"(#?)(PFS_[A-Z_]+)=(.*)", line)
        if match and (commented_too or not match.group(1)):
            found[match.group(2)] = match.group(3)
    return found


def test_the_unit_runs_pfs_serve_from_the_set_ups_link_before_docker() -> None:
    parsed = unit()
    assert "docker.service" in parsed["Unit"]["Before"].split()
    service = parsed["Service"]
    assert service["Restart"] == "on-failure"
    assert service["Type"] == "notify"
    assert service["EnvironmentFile"] == "-/etc/default/pfs"
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [LINK, "serve"]
    link_cli = (ROOT / "scripts" / "link-cli").read_text()
    assert f"PFS_CLI_LINK:-{LINK}" in link_cli
    parser_of(serve, "pfs serve").parse_args(command[2:])  # exits for an option it lacks
    assert "docker.service" in parsed["Install"]["WantedBy"].split()


def test_every_setting_of_the_env_file_is_a_pfs_serve_option_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = {settings["env"] for _flags, settings in serve.arguments if "env" in settings}
    every = settings(commented_too=True)
    assert set(every) <= variables, set(every) - variables
    assert settings(commented_too=False), "some settings are given, not only commented out"
    for key, value in every.items():
        monkeypatch.setenv(key, value)
    # Converts each value as typed, and exits for a bad one.
    parsed = vars(parser_of(serve, "pfs serve").parse_args([]))
    parsed.pop(VERB)
    assert parsed["driver_name"] == "pfs"
    assert parsed["max_jobs"] == 4


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_finds_nothing_to_say(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: the copy runs this checkout's pfs instead.
    copy = tmp_path / "pfs.service"
    copy.write_text(UNIT.read_text().replace(LINK, str(ROOT / ".venv" / "bin" / "pfs")))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if "pfs.service" in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr
