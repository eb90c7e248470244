"""The pool is private: what a container leaves in it gives a host user nothing.

A container writes into its volume as root, so it can leave a setuid-root binary or a
device node (here, one for the pool's own loop device) in a commit. These tests make such
files in a working copy as a container would, commit them through Docker's own calls, and
then try to use them as an unprivileged host user and through a bind mount, as Docker
makes one. Each attack is first shown to work on a plain tmpfs, so the tests can fail.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
PRINT_EUID = ["-c", "import os; print(os.geteuid())"]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def mount_options(point: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(point):
            return set(fields[5].split(","))
    raise AssertionError(f"nothing is mounted at {point}")


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="pfs-privacy-"))
    folder.chmod(0o755)
    yield folder
    for mount in sorted(folder.iterdir(), reverse=True):
        subprocess.run(["umount", "--lazy", str(mount)], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_state_dir_image_metadata_and_pool_mount_are_private(node: PfsNode) -> None:
    node.start()
    node.cli("repo", "create", "r")
    assert mode(node.state_dir) == 0o700
    assert mode(node.state_dir / "pool.img") == 0o600
    assert mode(node.pool_root) == 0o700
    for name in ("meta.db", "meta.db-wal"):
        assert mode(node.pool_root / name) == 0o600, name
    # No shared-memory file: the WAL index lives in the daemon's memory (see SqliteStore).
    assert not (node.pool_root / "meta.db-shm").exists()
    assert {"nosuid", "nodev", "noatime"} <= mount_options(node.pool_root)
    listing = as_nobody("ls", str(node.pool_root / "repos"))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


def test_an_older_wider_layout_is_made_private_and_remounted_safe(node: PfsNode) -> None:
    node.start()
    node.cli("repo", "create", "r")
    node.stop()
    node.state_dir.chmod(0o755)
    (node.state_dir / "pool.img").chmod(0o644)
    # As a daemon of an older version, killed, would have left it.
    subprocess.run(
        ["mount", "-o", "loop", str(node.state_dir / "pool.img"), str(node.pool_root)],
        check=True,
    )
    node.pool_root.chmod(0o755)
    (node.pool_root / "meta.db").chmod(0o644)
    assert "nosuid" not in mount_options(node.pool_root)

    node.start()
    assert {"nosuid", "nodev", "noatime"} <= mount_options(node.pool_root)
    assert mode(node.state_dir) == 0o700
    assert mode(node.state_dir / "pool.img") == 0o600
    assert mode(node.pool_root) == 0o700
    assert mode(node.pool_root / "meta.db") == 0o600
    assert node.cli_json("repo", "inspect", "r")["name"] == "r"


def loop_device_of(image: Path) -> Path:
    out = subprocess.run(
        ["losetup", "--noheadings", "-O", "NAME", "-j", str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out, f"no loop device backs {image}"
    return Path(out[0])


def plant(folder: Path, disk: Path) -> None:
    """What a hostile container leaves: a setuid-root interpreter and the pool's disk."""
    binary = folder / "suid-python"
    # Debian's own interpreter (scripts/bootstrap installs it): it keeps a setuid euid.
    shutil.copy(os.path.realpath("/usr/bin/python3"), binary)
    os.chown(binary, 0, 0)
    binary.chmod(0o4755)
    os.mknod(folder / "pool-disk", 0o666 | stat.S_IFBLK, os.stat(disk).st_rdev)


def test_a_committed_setuid_binary_and_device_node_give_nothing(
    node: PfsNode, open_folder: Path
) -> None:
    node.start()
    disk = loop_device_of(node.state_dir / "pool.img")
    # The attack works where nothing stops it: a tmpfs without nosuid,nodev.
    control = open_folder / "control"
    control.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(control)], check=True)
    plant(control, disk)
    assert as_nobody(str(control / "suid-python"), *PRINT_EUID).stdout.strip() == "0"
    with open(control / "pool-disk", "rb") as handle:
        assert len(handle.read(4096)) == 4096

    node.plugin("VolumeDriver.Create", {"Name": "r", "Opts": {}})
    mounted = node.plugin("VolumeDriver.Mount", {"Name": "r", "ID": "c1"})
    plant(Path(mounted["Mountpoint"]), disk)
    node.plugin("VolumeDriver.Unmount", {"Name": "r", "ID": "c1"})
    [commit] = node.cli_json("log", "r")
    snapshot = node.pool_root / "repos" / "r" / "commits" / commit["id"]
    assert os.lstat(snapshot / "suid-python").st_mode & stat.S_ISUID

    # An unprivileged host user cannot reach the pool at all.
    for path in (snapshot / "suid-python", snapshot / "pool-disk"):
        reached = as_nobody("cat", str(path))
        assert reached.returncode != 0 and "Permission denied" in reached.stderr
    # Docker bind-mounts a volume into a container; the bind keeps nosuid,nodev.
    bind = open_folder / "bind"
    bind.mkdir()
    subprocess.run(["mount", "--bind", str(snapshot), str(bind)], check=True)
    assert {"nosuid", "nodev"} <= mount_options(bind)
    assert as_nobody(str(bind / "suid-python"), *PRINT_EUID).stdout.strip() == "65534"
    # Not even root opens a device node on the pool.
    for path in (snapshot / "pool-disk", bind / "pool-disk"):
        with pytest.raises(PermissionError):
            open(path, "rb").close()
    refused = node.cli("cat", f"r@{commit['id']}", "pool-disk", check=False)
    assert refused.returncode != 0
    assert "pool-disk" in refused.stderr and "regular file" in refused.stderr


@pytest.mark.parametrize("options", ["loop", "loop,nosuid,nodev"])
def test_a_state_dir_on_btrfs_is_checked_for_nosuid_and_nodev(tmp_path: Path, options: str) -> None:
    image, host_fs = tmp_path / "host.img", tmp_path / "host"
    with open(image, "wb") as handle:
        handle.truncate(512 * 1024**2)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True)
    host_fs.mkdir()
    subprocess.run(["mount", "-o", options, str(image), str(host_fs)], check=True)
    node = PfsNode(host_fs / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    try:
        node.start()
        node.cli("repo", "create", "r")
        assert mode(node.state_dir) == 0o700 and mode(node.pool_root) == 0o700
        warned = "SECURITY: the pool" in node.log()
        assert warned == (options == "loop"), node.log()
        if warned:
            assert "without nosuid,nodev" in node.log()
            assert "-o remount,nosuid,nodev" in node.log()
    finally:
        node.cleanup()
        subprocess.run(["umount", str(host_fs)], check=True)
