"""``pfs doctor`` and ``pfs mount list --stale`` on a real daemon: stuck state is shown
with the command that fixes it, and running that command clears it. The driver name a
pool was served under is remembered, and a change is said in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode


def findings(node: PfsNode) -> list[dict[str, Any]]:
    done = node.cli("doctor", "--json", check=False)
    found: list[dict[str, Any]] = json.loads(done.stdout)
    assert done.returncode == (1 if any(f["severity"] != "note" for f in found) else 0)
    return found


def test_a_working_copy_written_after_its_mount_was_released_is_shown_and_fixed(
    node: PfsNode,
) -> None:
    node.start()
    volume = f"{node.driver_name}/r"
    path = Path(node.plugin("VolumeDriver.Mount", {"Name": volume, "ID": "m1"})["Mountpoint"])
    (path / "a").write_text("one")
    node.cli("mount", "release", "m1")
    (path / "b").write_text("written after the release")  # a container that went on
    [finding] = findings(node)
    assert finding["severity"] == "warning"
    assert "r/master holds changes no commit holds" in finding["what"]
    assert finding["fix"] == "pfs commit r/master"
    node.cli(*finding["fix"].split()[1:])
    assert findings(node) == []
    assert node.cli("doctor").stdout.strip() == "nothing stuck or suspicious"
    assert node.cli("cat", "r@master", "b").stdout == "written after the release"


def test_stale_mounts_need_an_engine_to_ask_and_say_so(node: PfsNode) -> None:
    node.start()
    volume = f"{node.driver_name}/r"
    node.plugin("VolumeDriver.Mount", {"Name": volume, "ID": "m1"})
    done = node.cli("mount", "list", "--stale", check=False)
    assert done.returncode != 0
    assert "does not ask an engine (--reconcile-interval 0)" in done.stderr
    [note] = findings(node)
    assert note["severity"] == "note" and "reconciliation with the engine is off" in note["what"]
    reply = node.api("GET", "/v1/mounts", stale="maybe")
    assert reply.status_code == 400 and "stale must be true or false" in reply.text


def test_a_pool_served_under_another_driver_name_is_said_at_start_and_by_doctor(
    tmp_path: Path,
) -> None:
    first = PfsNode(tmp_path / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    second = PfsNode(tmp_path / "state", plugin_dir=PRIVATE_PLUGIN_DIR)
    try:
        first.start()
        volume = f"{first.driver_name}/r"
        path = Path(first.plugin("VolumeDriver.Mount", {"Name": volume, "ID": "m1"})["Mountpoint"])
        (path / "a").write_text("kept")
        first.stop()
        second.start()
        said = (
            f"this pool was last served as Docker volume driver {first.driver_name!r} and "
            f"is now served as {second.driver_name!r}"
        )
        assert said in second.log()
        found = {f["what"].split(":")[0]: f for f in findings(second)}
        mount = next(f for f in found.values() if "mount m1 of" in f["what"])
        assert "made under another driver name" in mount["what"]
        assert mount["fix"] == "once its container is gone: pfs mount release m1"
        driver = next(f for f in found.values() if "was served as Docker driver" in f["what"])
        assert driver["fix"].startswith(f"restart pfs with --driver-name {first.driver_name}")
        second.cli("mount", "release", "m1")
        assert second.cli("cat", "r@master", "a").stdout == "kept"
        second.stop()
        second.start()  # said once: the pool now remembers the new name
        assert second.log().count(said) == 1
    finally:
        second.cleanup()
        first.cleanup()
