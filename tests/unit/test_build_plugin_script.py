"""``scripts/build-plugin`` refuses bad input before it builds anything, saying why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-plugin"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the script runs as root only")


def build_plugin(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the script with ``args``; nothing is built (every case is refused first)."""
    return subprocess.run(
        [str(SCRIPT), "--no-create", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param((), "give the plugin's NAME", id="no-name"),
        pytest.param(("Pfs",), "plugin name 'Pfs' is not NAME[:TAG]", id="uppercase"),
        pytest.param(("a" * 18,), "1 to 17 of a-z", id="too-long-for-the-socket-path"),
        pytest.param(("pfs:",), "plugin name 'pfs:' is not NAME[:TAG]", id="empty-tag"),
        pytest.param(("reg:5000/pfs:2",), "a registry reference needs --driver", id="ref"),
        pytest.param(("--driver", "P", "reg:5000/pfs:2"), "driver name 'P'", id="bad-driver"),
        pytest.param(("pfs", "two"), "one NAME only", id="two-names"),
        pytest.param(("--colour", "pfs"), "unknown option --colour", id="unknown-option"),
    ],
)
def test_bad_input_is_refused_with_the_reason(args: tuple[str, ...], says: str) -> None:
    done = build_plugin(*args)

    assert done.returncode == 2
    assert says in done.stderr
