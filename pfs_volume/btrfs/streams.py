"""``btrfs send`` and ``btrfs receive`` as streams of bytes (argument lists, no shell).

Received subvolumes are only trusted once they are read-only and carry a received UUID:
an interrupted receive leaves a writable partial subvolume, which is deleted. A receive
is confined to the subvolume it makes (``stream_check`` and ``btrfs receive --chroot``).
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pfs_volume.btrfs import ioctl, stream_check
from pfs_volume.btrfs.pool import BTRFS
from pfs_volume.errors import BtrfsCommandError, StorageError, StreamRefused

SETPRIV = "setpriv"
"""util-linux's setpriv: ``--pdeathsig KILL`` makes ``btrfs receive`` die with pfs.
``btrfs receive`` finishes a snapshot at a clean end of its input, and the pipe of a
parent that died looks exactly like one."""
CHUNK = 1024 * 1024
STREAM_TIMEOUT = 3600.0
PARENT_TIMEOUT = 60.0
"""Seconds btrfs receive may take to make a snapshot of its base once asked."""
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


def receive(
    chunks: Iterable[bytes],
    into: Path,
    name: str,
    base: Path | None = None,
    twins: Iterable[Path] = (),
) -> Path:
    """Receive the send stream of the snapshot ``name`` into the folder ``into``, confined
    there; the new read-only subvolume ``into/name``.

    ``btrfs receive`` runs chrooted into ``into`` and sees only the commands
    ``stream_check`` let through: one subvolume, ``name``, built on ``base`` (an
    incremental stream) or on nothing, every path inside it. Other receives may run into
    the same folder at once: only ``into/name`` is looked at, and only it is deleted on
    failure.

    btrfs finds the base by its received UUID, and several subvolumes of a pool can have
    the same one (the same export imported under two names): ``twins`` names the other
    copies of the base's commit. If btrfs built on one of them, the stream is checked
    against that one; a subvolume that is none of them is refused.

    Raises:
        StreamRefused: the stream would reach outside ``into/name``, makes another
            subvolume, or builds on another base (nothing of it is kept).
        StorageError: ``into/name`` exists already, or ``btrfs receive`` fails or leaves
            no whole snapshot (any partial subvolume it left is deleted).
    """
    target = into / name
    if target.exists() or target.is_symlink():
        raise StorageError(f"cannot receive {target}: it exists already")
    base_ref = None if base is None else _base(base)
    # --chroot: the stream's paths resolve inside ``into``; -e: stop at the end command;
    # -E 1: stop at the first failing command.
    args = [SETPRIV, "--pdeathsig", "KILL", "--", BTRFS, "receive", "-q", "-C", "-e", "-E", "1"]
    args.append(str(into))
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    _widen(process.stdin)
    stdin = process.stdin

    def started() -> stream_check.Base | None:
        stdin.flush()
        return None if base_ref is None else _parent(process, target, base_ref, twins)

    checker = stream_check.StreamChecker(name, base_ref, started)
    try:
        for chunk in checker.check(chunks):
            stdin.write(chunk)
        stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        process.kill()
        process.wait()
        _discard(target)
        raise
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.wait(timeout=STREAM_TIMEOUT) != 0:
        _discard(target)
        raise BtrfsCommandError(args, process.returncode, stderr)
    if not target.exists():
        raise StorageError(f"btrfs receive into {into} made no subvolume {name}")
    info = ioctl.subvolume_info(target)
    if not info.readonly or info.received_uuid is None:
        _discard(target)
        raise StorageError(f"btrfs receive left a partial subvolume {target}; deleted")
    return target


def _base(path: Path) -> stream_check.Base:
    """The base of an incremental receive, with the UUIDs a sender may know it by."""
    info = ioctl.subvolume_info(path)
    known = {uuid.UUID(u) for u in (info.uuid, info.received_uuid) if u is not None}
    return stream_check.Base(path, frozenset(known))


def _parent(
    process: subprocess.Popen[bytes], target: Path, base: stream_check.Base, twins: Iterable[Path]
) -> stream_check.Base | None:
    """Once btrfs made the snapshot ``target``: the subvolume it was made of, which must be
    ``base`` or one of its ``twins`` (a read-only copy with the UUID the stream named),
    known from then on by its received UUID alone (the one btrfs finds clone sources by:
    by its own UUID, btrfs would clone from whatever subvolume received a stream naming
    it). None when btrfs failed before making it (its status and words then tell).

    Raises:
        StreamRefused: btrfs built on another subvolume that claims the base's UUID.
    """
    deadline = time.monotonic() + PARENT_TIMEOUT
    while not target.exists():
        if process.poll() is not None:
            return None
        if time.monotonic() > deadline:
            raise StorageError(f"btrfs receive made no snapshot {target} in {PARENT_TIMEOUT}s")
        time.sleep(0.002)
    built_on = ioctl.subvolume_info(target).parent_uuid
    for candidate in (base.path, *twins):
        try:
            info = ioctl.subvolume_info(candidate)
        except StorageError:
            continue  # no such copy
        claimed = {uuid.UUID(u) for u in (info.uuid, info.received_uuid) if u is not None}
        if info.uuid == built_on and info.readonly and claimed & base.uuids:
            received = {uuid.UUID(info.received_uuid)} if info.received_uuid else set()
            return stream_check.Base(candidate, frozenset(received))
    raise StreamRefused(
        f"the send stream of commit {target.name} was refused: btrfs built it on a subvolume "
        f"that claims the UUID of its base {base.path.name} but is no copy of that commit"
    )


def _discard(target: Path) -> None:
    if target.exists():
        subprocess.run(
            [BTRFS, "subvolume", "delete", str(target)], capture_output=True, check=False
        )
