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


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("", id="a-folder-of-other-things"),
        pytest.param("/", id="with-a-trailing-slash"),
        pytest.param("/sub/..", id="through-dot-dot"),
    ],
)
def test_a_dir_holding_anything_but_an_earlier_build_is_refused_and_kept(
    tmp_path: Path, where: str
) -> None:
    """The build replaces --dir whole (rm -rf): ``--dir .`` in the source tree, a
    cache folder with a trailing slash or a typo must not delete what is there."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "precious").write_text("keep me")

    done = build_plugin("--dir", f"{tmp_path}{where}", "pfs")

    assert done.returncode == 2
    assert "it holds" in done.stderr
    assert (tmp_path / "precious").read_text() == "keep me"


def test_a_dir_that_is_a_symlink_or_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "precious").write_text("keep me")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("keep me")

    for where in ("link", "file"):
        done = build_plugin("--dir", str(tmp_path / where), "pfs")
        assert done.returncode == 2, done.stderr
        assert "it is not a folder" in done.stderr
    assert (tmp_path / "real" / "precious").read_text() == "keep me"
    assert (tmp_path / "file").read_text() == "keep me"


def test_a_second_build_waits_for_the_first_and_touches_nothing_meanwhile(
    tmp_path: Path,
) -> None:
    """Two builds at once on a cold cache would both make the base, the second moving
    its copy inside the first's; the second waits on the cache's lock instead."""
    import fcntl
    import signal
    import time

    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "PFS_PLUGIN_CACHE": str(cache), "PFS_DEBIAN_MIRROR": "http://127.0.0.1:9/"}
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
        second = subprocess.Popen(
            [str(SCRIPT), "--no-create", "pfs"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            time.sleep(3)
            assert second.poll() is None, second.stderr.read() if second.stderr else ""
            assert sorted(p.name for p in cache.iterdir()) == [".lock"]
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    assert second.stderr is not None
    assert "waiting for another build" in second.stderr.read()


def test_what_a_killed_build_left_is_removed_by_the_next(tmp_path: Path) -> None:
    """A SIGKILLed build runs no EXIT trap: its half-made base, deps, wheels and build
    tools stay under temporary names (hundreds of MB each) unless the next build, which
    holds the cache's lock, removes them."""
    cache = tmp_path / "cache"
    left = [".base-0123456789abcdef.4242", ".deps-0123456789abcdef.4242"]
    left += [".wheels-0123456789abcdef.4242", "build-tools-0123456789abcdef.4242"]
    for name in left:
        (cache / name / "usr").mkdir(parents=True)
    env = {**os.environ, "PFS_PLUGIN_CACHE": str(cache), "PFS_DEBIAN_MIRROR": "http://127.0.0.1:9/"}

    done = subprocess.run(
        [str(SCRIPT), "--base-only"], env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode != 0  # no mirror: debootstrap fails, after the clean-up
    assert not [name for name in left if (cache / name).exists()]


FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "plugin inspect")
    [ "$3" = -f ] || exit 1  # no plugin by that name yet
    echo "$FAKE_API_SOURCE" ;;
  "plugin create") ;;
  "plugin enable")
    [ -d "$FAKE_API_SOURCE" ] || { echo "stat $FAKE_API_SOURCE: missing" >&2; exit 1; } ;;
  *) exit 1 ;;
esac
"""


def test_enable_on_a_fresh_host_makes_the_api_folder_now_and_at_every_boot(
    tmp_path: Path,
) -> None:
    """The api mount's source (/run/pfs) must exist for Docker to start the plugin: on a
    fresh host ``--enable`` failed, and /run is emptied at every boot, where dockerd
    starts the enabled plugin. (A warm build: the cache's base and deps are reused.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    tmpfiles = tmp_path / "tmpfiles.d"
    tmpfiles.mkdir()
    api = tmp_path / "run" / "pfs"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "docker.log"),
        "FAKE_API_SOURCE": str(api),
        "PFS_TMPFILES_DIR": str(tmpfiles),
        "PFS_PLUGIN_READY_TIMEOUT": "0",  # nothing serves the API here
    }
    env.pop("DOCKER_HOST", None)

    done = subprocess.run(
        [str(SCRIPT), "--enable", "--dir", str(tmp_path / "plugin"), "pfsfresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stderr
    assert api.is_dir()
    assert (tmpfiles / "pfs-plugin-pfsfresh.conf").read_text() == f"d {api} 0755 root root -\n"
    assert "plugin enable pfsfresh" in (tmp_path / "docker.log").read_text()


def test_enable_returns_once_pfs_is_ready_not_when_docker_says_enabled(
    tmp_path: Path,
) -> None:
    """``docker plugin enable`` returns while pfs still starts, and a ``-v NAME/repo``
    then is taken for a local volume: ``--enable`` waits for the API's health."""
    import http.server
    import socketserver
    import threading
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    api = tmp_path / "run" / "pfs"
    api.mkdir(parents=True)
    asked: list[float] = []  # when each health request came

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(time.monotonic())
            self.send_response(200 if asked[-1] - asked[0] >= 2 else 503)  # starting
            self.send_header("Content-Length", "0")
            self.end_headers()

        def address_string(self) -> str:
            return "unix"

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(str(api / "api.sock"), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "docker.log"),
        "FAKE_API_SOURCE": str(api),
        "PFS_TMPFILES_DIR": str(tmp_path / "none"),
    }
    env.pop("DOCKER_HOST", None)
    try:
        done = subprocess.run(
            [str(SCRIPT), "--enable", "--dir", str(tmp_path / "plugin"), "pfsready"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        finished = time.monotonic()
    finally:
        server.shutdown()
        server.server_close()

    assert done.returncode == 0, done.stderr
    assert "pfs is ready" in done.stderr
    assert asked and finished - asked[0] >= 2
