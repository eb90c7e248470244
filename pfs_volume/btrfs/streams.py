"""``btrfs send`` and ``btrfs receive`` as streams of bytes (argument lists, no shell).

Received subvolumes are only trusted once they are read-only and carry a received UUID:
an interrupted receive leaves a writable partial subvolume, which is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pfs_volume.btrfs import ioctl
from pfs_volume.btrfs.command import BtrfsCommandError
from pfs_volume.btrfs.pool import BTRFS
from pfs_volume.errors import StorageError

SETPRIV = "setpriv"
"""util-linux's setpriv: ``--pdeathsig KILL`` makes ``btrfs receive`` die with pfs.
``btrfs receive`` finishes a snapshot at a clean end of its input, and the pipe of a
parent that died looks exactly like one."""
CHUNK = 1024 * 1024
STREAM_TIMEOUT = 3600.0
PIPE_SIZE = 1024 * 1024
"""Bytes a pipe to or from btrfs holds: the default 64 KiB costs a context switch per
64 KiB, about a fifth of the throughput of a bare ``btrfs send | btrfs receive``."""


def _widen(pipe: IO[bytes]) -> None:
    # Above /proc/sys/fs/pipe-max-size this fails, and the default size still works.
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def send(snapshot: Path, parent: Path | None = None) -> Iterator[bytes]:
    """The send stream of a read-only ``snapshot``, incremental against ``parent``.

    Raises:
        BtrfsCommandError: when ``btrfs send`` fails (its stderr in the message).
    """
    args = [BTRFS, "send", "-q"]
    if parent is not None:
        args += ["-p", str(parent)]
    args.append(str(snapshot))
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    _widen(process.stdout)
    try:
        while chunk := process.stdout.read(CHUNK):
            yield chunk
        stderr = process.stderr.read().decode(errors="replace")
        if process.wait(timeout=STREAM_TIMEOUT) != 0:
            raise BtrfsCommandError(args, process.returncode, stderr)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def receive(chunks: Iterable[bytes], into: Path, name: str | None = None) -> Path:
    """Receive one send stream into the folder ``into``; the new read-only subvolume.

    With ``name`` (the sent snapshot's name), other receives may run into the same folder
    at once: only ``into/name`` is looked at, and only it is deleted on failure.

    Raises:
        StorageError: when ``btrfs receive`` fails or leaves no whole snapshot (any
            partial subvolume it left is deleted).
    """
    before = set(into.iterdir()) if name is None else {p for p in into.iterdir() if p.name != name}
    args = [SETPRIV, "--pdeathsig", "KILL", "--", BTRFS, "receive", "-q", str(into)]
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    _widen(process.stdin)
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
        process.stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        process.kill()
        process.wait()
        _discard_new(into, before, name)
        raise
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.wait(timeout=STREAM_TIMEOUT) != 0:
        _discard_new(into, before, name)
        raise BtrfsCommandError(args, process.returncode, stderr)
    made = sorted(set(into.iterdir()) - before)
    if name is not None:
        made = [path for path in made if path.name == name]
    if len(made) != 1:
        _discard_new(into, before, name)
        raise StorageError(f"btrfs receive into {into} made {len(made)} subvolumes, not one")
    info = ioctl.subvolume_info(made[0])
    if not info.readonly or info.received_uuid is None:
        _discard_new(into, before, name)
        raise StorageError(f"btrfs receive left a partial subvolume {made[0]}; deleted")
    return made[0]


def _discard_new(into: Path, before: set[Path], name: str | None = None) -> None:
    for path in set(into.iterdir()) - before:
        if name is not None and path.name != name:
            continue
        subprocess.run([BTRFS, "subvolume", "delete", str(path)], capture_output=True, check=False)
