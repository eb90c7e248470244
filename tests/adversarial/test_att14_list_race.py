"""Attack on issue 14's kept List answer: Lists racing writes (creates, commits through
mounts, branch and working-copy drops, gc, removes) on other threads. Whatever answer
a racing List kept, the List after the writers stop equals an answer worked out from
scratch (``volume_infos``): a kept answer never outlives a change. (Held on main: a
guard, not a finding.)"""

from __future__ import annotations

import threading
import time

from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from pfs_volume.volumes.listing import volume_infos

ROUNDS = 12


def test_the_list_after_racing_writes_is_the_fresh_one(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def lister() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                volumes.list()
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=lister) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for index in range(ROUNDS):
            name = f"r{index % 3}"
            volumes.create(name, {})
            volumes.create(f"{name}/b{index}", {})
            mount_id = f"m{index}"
            path = volumes.mount(name, mount_id)
            with open(f"{path}/f", "w") as out:
                out.write(str(index))
            volumes.unmount(name, mount_id)
            branch = store.get_branch(name, "master")
            if branch is not None and branch.head:
                volumes.create(f"{name}@{branch.head[:8]}", {})
            if index % 4 == 3:
                if repos.is_working_copy(name, f"b{index}"):
                    repos.drop_working_copy(name, f"b{index}")
                volumes.remove(f"{name}/b{index - 1}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    fresh = volume_infos(repos, store, "pfs")
    assert volumes.list() == fresh
    assert volumes.list() == volume_infos(repos, store, "pfs")
