"""pfs as a managed plugin against the legacy daemon, on one private engine.

Both serve the same engine at once, each with its own pool and driver name, and take
turns within every round (which one goes first flips each round), so that drift and the
machine's other load hit both alike. It times:

* commit on unmount: ``VolumeDriver.Unmount`` on the plugin's socket, as Docker sends
  it, of a branch whose working copy just got one new 1 MiB file (written through the
  mount point, like a container would);
* ``docker run --rm`` of a container that writes one file into a pfs volume (Mount,
  the container, Unmount and its commit), from the client;
* ``docker plugin enable`` with 10,000 commits in the pool, until the plugin's API
  answers; and, on the same pool, a legacy ``pfs serve`` until both sockets answer (the
  migration path: the same state dir served by the other kind under another name).

Targets: managed/legacy <= 1.1 for the first two, enable <= 3 s at 10,000 commits.
Run as root from the repo root (the plugin is built with ``scripts/build-plugin``; a cold
build makes the debootstrap base first):
    PYTHONPATH=$PWD .venv/bin/python bench/managed_plugin.py [--runs 20] [--commits 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    fmt_ratio,
    fmt_seconds,
    load_average,
    machine_notes,
    median,
    print_notes,
    require_root,
    run,
    table,
    timed,
    verdict,
    write_results,
)
from bench.startup_scale import NODE_ID, build_pool, write_records
from pfs_volume.btrfs.pool_image import MOUNT_NAME
from pfs_volume.config import PLUGIN_DIR
from pfs_volume.meta.sqlite import SqliteStore
from tests import pfs_node
from tests.docker_engine import DockerEngine
from tests.managed_plugin import ManagedPlugin, build_plugin_dir
from tests.pfs_node import PfsNode, unique_driver_name

TARGET_RATIO = 1.1
TARGET_ENABLE = 3.0
STARTS = 3
FILE_BYTES = 1024**2
SETTINGS = {"PFS_POOL_SIZE": "4G", "PFS_RECONCILE_INTERVAL": "0", "PFS_LOG_LEVEL": "info"}


def host_path(node: PfsNode, mountpoint: str) -> Path:
    """Where the host sees a mount point the daemon answered (the plugin's is in its
    propagated mount)."""
    if isinstance(node, ManagedPlugin):
        return node.host_path(mountpoint)
    return Path(mountpoint)


def time_unmount(node: PfsNode, name: str, round_: int) -> float:
    """Mount ``name``, write one new file through the mount point, time the Unmount."""
    mount_id = f"bench{round_:04d}"
    answer = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
    assert not answer.get("Err"), answer
    target = host_path(node, answer["Mountpoint"]) / f"file{round_}"
    target.write_bytes(os.urandom(FILE_BYTES))

    def unmount() -> None:
        done = node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
        assert not done.get("Err"), done

    return timed(unmount)


def compare(
    engine: DockerEngine, nodes: dict[str, PfsNode], image: str, runs: int
) -> dict[str, dict[str, list[float]]]:
    """Samples of both timings for both kinds, taking turns within each round."""
    samples: dict[str, dict[str, list[float]]] = {
        "commit on unmount": {kind: [] for kind in nodes},
        "docker run (write one file)": {kind: [] for kind in nodes},
    }
    for node in nodes.values():  # untimed: make the repos, warm the caches
        node.plugin("VolumeDriver.Create", {"Name": "unmount"})
        time_unmount(node, "unmount", 9999)
        engine.run(*run_args(node, image))
    for round_ in range(runs):
        kinds = list(nodes) if round_ % 2 == 0 else list(reversed(nodes))
        for kind in kinds:
            node = nodes[kind]
            samples["commit on unmount"][kind].append(time_unmount(node, "unmount", round_))
            args = run_args(node, image)
            samples["docker run (write one file)"][kind].append(
                timed(lambda args=args: engine.run(*args))  # type: ignore[misc]
            )
    return samples


def run_args(node: PfsNode, image: str) -> list[str]:
    """``docker run`` arguments: the node's driver named, its ``run`` repo at /data."""
    volume = f"{node.driver_name}/run@master:/data"
    return ["--volume-driver", node.driver_name, "-v", volume, image, "sh", "-c", "date > /data/f"]


def time_enable(plugin: ManagedPlugin, commits: int) -> dict[str, Any]:
    """Disable the plugin, put a pool of ``commits`` commits in its state dir, then time
    ``docker plugin enable`` until its API answers, and a legacy daemon on that pool."""
    plugin.disable()
    state = plugin.pool_root.parent
    for entry in state.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    print(f"  building {commits:,} commits in the plugin's state dir", flush=True)
    records = build_pool(state, commits)
    root = state / MOUNT_NAME
    store = SqliteStore(root / "meta.db", NODE_ID)
    write_records(store, root, records)
    store.close()
    run(["umount", str(root)])
    plugin.set(f"PFS_NODE_ID={NODE_ID}")
    result: dict[str, Any] = {"enable": [], "legacy start": [], "repos": 0}
    for _ in range(STARTS):
        result["enable"].append(timed(plugin.enable))
        result["repos"] = len(plugin.cli_json("repo", "list"))
        plugin.disable()
    legacy = PfsNode(state, unique_driver_name("pfsmigrate"), args=["--node-id", NODE_ID])
    legacy.api_socket = plugin.state_dir / "legacy-api.sock"  # the state dir's is too long
    try:
        for _ in range(STARTS):
            result["legacy start"].append(timed(legacy.start))
            legacy.stop()
    finally:
        legacy.cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds (20)")
    parser.add_argument("--commits", type=int, default=10_000, help="for the enable time")
    args = parser.parse_args()
    require_root()
    pfs_node.START_TIMEOUT = 600.0
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="pfsbench-managed-"))
    engine = DockerEngine(state / "docker")
    legacy = PfsNode(
        state / "legacy", unique_driver_name("pfsbench"), pool_size="4G", plugin_dir=PLUGIN_DIR
    )
    name = unique_driver_name("pmb")  # 17 bytes at most (scripts/build-plugin)
    plugin = ManagedPlugin(engine, name, state / "managed", SETTINGS)
    try:
        build = timed(lambda: build_plugin_dir(state / "build", name))
        print(f"plugin folder built in {fmt_seconds(build)}")
        engine.start()
        image = engine.busybox_image()
        create = timed(lambda: plugin.create(state / "build"))
        shutil.rmtree(state / "build")
        first_enable = timed(plugin.enable)
        legacy.start()
        notes = machine_notes(state)
        print("managed plugin vs legacy daemon, same private engine (busybox)")
        print_notes(notes)
        print(
            f"docker plugin create {fmt_seconds(create)}, first enable {fmt_seconds(first_enable)}"
        )
        nodes: dict[str, PfsNode] = {"legacy": legacy, "managed": plugin}
        samples = compare(engine, nodes, image, args.runs)
        rows: list[list[str]] = []
        results: dict[str, Any] = {}
        for what, by_kind in samples.items():
            old, new = median(by_kind["legacy"]), median(by_kind["managed"])
            rows.append(
                [what, str(args.runs), fmt_seconds(old), fmt_seconds(new), fmt_ratio(new / old)]
            )
            results[what] = {"samples": by_kind, "ratio": new / old}
        print(f"\nmedians of {args.runs} rounds")
        print(table(["", "runs", "legacy", "managed", "managed/legacy"], rows))
        for what, result in results.items():
            ratio = float(result["ratio"])
            print(f"target {what}: <= {TARGET_RATIO}: {ratio:.2f} {verdict(ratio <= TARGET_RATIO)}")
        legacy.cleanup()
        enable = time_enable(plugin, args.commits)
        results["enable"] = enable
        enables = ", ".join(fmt_seconds(s) for s in enable["enable"])
        starts = ", ".join(fmt_seconds(s) for s in enable["legacy start"])
        print(
            f"\n{args.commits:,} commits ({enable['repos']} repos): docker plugin enable until "
            f"the API answers {enables}; legacy pfs serve on the same pool {starts}"
        )
        enabled = median(enable["enable"])
        met = verdict(enabled <= TARGET_ENABLE)
        print(f"target enable <= {TARGET_ENABLE:.0f} s: {enabled:.2f} s {met}")
        elapsed = time.monotonic() - started
        notes["load average at end"] = load_average()
        print(
            f"total run time {elapsed:.0f} s; load average at end: {notes['load average at end']}"
        )
        path = write_results(
            "managed_plugin",
            {
                "machine": notes,
                "results": results,
                "build_s": build,
                "create_s": create,
                "elapsed_s": elapsed,
            },
        )
        print(f"results: {path}")
    finally:
        plugin.remove()
        engine.stop()
        legacy.cleanup()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
