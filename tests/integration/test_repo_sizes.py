"""The daemon measures what each commit wrote and keeps the repo's total: ``repo
inspect``'s size on a real daemon (the size meter is the daemon's to start and stop)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.pfs_node import PfsNode

KIB = 1024
WAIT = 30.0


def test_the_daemon_keeps_the_size(node: PfsNode) -> None:
    node.start()
    name = f"{node.driver_name}/photos"
    for mount_id, size in (("m1", 96 * KIB), ("m2", 32 * KIB)):
        path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})["Mountpoint"]
        Path(path, mount_id).write_bytes(os.urandom(size))
        assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id}) == {}
    deadline = time.monotonic() + WAIT
    while True:
        shown = node.api("GET", "/v1/repos/photos").json()
        if shown["size_unmeasured_commits"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (shown["size"], shown["size_unmeasured_commits"]) == (128 * KIB, 0)
    node.stop()  # closes the meter, then unmounts the pool
