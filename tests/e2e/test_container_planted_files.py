"""What a container leaves in its volume gives nothing to host users or other containers.

A container runs as root inside: it can make a setuid-root binary and device nodes in its
volume. The pool is mounted nosuid,nodev and Docker's bind mounts keep those flags, so
every later container sees the volume with them, and host users cannot reach the pool.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.docker_user import MOUNT_POINT, DockerUser

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

PLANT = (
    "cp /bin/busybox /data/suid && chmod 4755 /data/suid && "
    "mknod /data/mem c 1 1 && mknod /data/disk b 7 0 && mkfifo /data/fifo"
)


def mount_flags(user: DockerUser, name: str) -> set[str]:
    out = user.run(name, f"grep ' {MOUNT_POINT} ' /proc/self/mountinfo").stdout
    [line] = out.splitlines()
    return set(line.split()[5].split(","))


def test_planted_setuid_binary_and_devices_are_inert(user: DockerUser) -> None:
    user.run("planted", PLANT)
    [commit] = user.log("planted")

    for name in ("planted", f"planted@{commit['id']}"):
        assert {"nosuid", "nodev"} <= mount_flags(user, name), name
    snapshot = user.node.pool_root / "repos" / "planted" / "commits" / commit["id"]
    assert (snapshot / "suid").stat().st_mode & 0o4000
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    for path in ("suid", "mem", "disk", "fifo"):
        reached = subprocess.run(
            [*nobody, "stat", str(snapshot / path)], capture_output=True, text=True, timeout=30
        )
        assert reached.returncode != 0 and "Permission denied" in reached.stderr, path
    for path in ("mem", "disk"):
        with pytest.raises(PermissionError):
            open(snapshot / path, "rb", buffering=0).close()
    for path in ("mem", "disk", "fifo"):
        refused = user.node.cli("cat", f"planted@{commit['id']}", path, check=False)
        assert refused.returncode != 0 and "regular file" in refused.stderr, path
