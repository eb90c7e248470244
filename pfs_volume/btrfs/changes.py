"""What changed between two commit snapshots: ``btrfs send --no-data | receive --dump``.

``btrfs send -p PARENT CHILD`` walks only the parts of the two trees that differ, so the
listing costs time in proportion to the change, not to the repo's size; ``--no-data``
leaves the file data out (a changed range shows as ``update_extent``). Both snapshots
must be read-only and on the same file system. With no parent, ``send`` lists the whole
child: the first commit's diff costs what that commit holds.

The two processes are joined by a pipe, never a shell. Their stderr goes to temporary
files (it is read only when they fail, and a file never fills up and blocks a process,
as an unread pipe would); the listing is read as it comes, under one deadline for the
whole run. ``receive --dump`` stops at the stream's end command, so ``send`` may die of
SIGPIPE after a complete stream: that is not an error. ``pfs_volume.diff`` turns the
listing into changes.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO

from pfs_volume.diff import Change, MetadataChanged, changes_from_dump
from pfs_volume.errors import BtrfsCommandError, PfsError
from pfs_volume.safepath import closing, open_parent, walk_tree

log = logging.getLogger(__name__)

BTRFS = "btrfs"
CHANGES_TIMEOUT = 600.0
"""Seconds one listing may take, both processes together (a large change is slow)."""
CANCEL_CHECK = 0.2
"""Seconds between looks at a listing's ``cancel`` while it waits for output."""
READ_SIZE = 64 * 1024
DUMP_COMMAND = [BTRFS, "receive", "--dump"]
PATH_MAX = os.pathconf("/", "PC_PATH_MAX")
CANCELLED = "cancelled"


def _send_command(parent: Path | None, child: Path) -> list[str]:
    """The ``btrfs send`` half of the pipeline (global ``-q``: stderr holds only errors)."""
    relative_to = ["-p", str(parent)] if parent is not None else []
    return [BTRFS, "-q", "send", "--no-data", *relative_to, str(child)]


def dump_lines(
    parent: Path | None,
    child: Path,
    *,
    timeout: float = CHANGES_TIMEOUT,
    cancel: threading.Event | None = None,
) -> Generator[str, None, None]:
    """Yield the ``btrfs receive --dump`` listing of what turns ``parent`` into ``child``.

    The processes run while the caller iterates; leaving the loop early (or an error)
    kills and reaps both.

    Args:
        parent: a read-only snapshot, or None to list all of ``child``.
        child: a read-only snapshot on the same file system.
        timeout: seconds for the whole listing.
        cancel: once set, the listing is abandoned (both commands killed).
    Yields:
        The listing's lines without their line ends (bytes that are not UTF-8 are
        kept as surrogate escapes; the dump escapes paths, but not xattr values).
    Raises:
        BtrfsCommandError: when either command fails (both stderrs are in the
            message), cannot be started, or the listing takes longer than ``timeout``
            or is cancelled.
    """
    send_args = _send_command(parent, child)
    shown = [*send_args, "|", *DUMP_COMMAND]
    deadline = time.monotonic() + timeout
    log.debug("running %s", shown)
    with tempfile.TemporaryFile() as send_err, tempfile.TemporaryFile() as dump_err:
        try:
            sender = subprocess.Popen(
                send_args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=send_err
            )
        except OSError as exc:
            raise BtrfsCommandError(shown, -1, str(exc)) from exc
        assert sender.stdout is not None
        try:
            dumper = subprocess.Popen(
                DUMP_COMMAND,
                stdin=sender.stdout,
                stdout=subprocess.PIPE,
                stderr=dump_err,
                # It escapes what the C library calls unprintable: fix the locale.
                env={**os.environ, "LC_ALL": "C"},
            )
        except OSError as exc:
            _stop(sender)
            raise BtrfsCommandError(shown, -1, str(exc)) from exc
        finally:
            # Only receive reads the pipe now: if it dies, send gets EPIPE, not a hang.
            sender.stdout.close()
        assert dumper.stdout is not None
        try:
            unfinished = yield from _lines(dumper.stdout, deadline, shown, timeout, cancel)
            for process in (dumper, sender):
                try:
                    process.wait(timeout=max(deadline - time.monotonic(), 0.0))
                except subprocess.TimeoutExpired as exc:
                    raise _timed_out(shown, timeout) from exc
        finally:
            for process in (dumper, sender):
                _stop(process)
            dumper.stdout.close()
        failed = [
            (what, process, err)
            for what, process, err in (
                ("send", sender, send_err),
                ("receive --dump", dumper, dump_err),
            )
            if process.returncode != 0
        ]
        # receive --dump exits as soon as it reads the stream's end command, and send's
        # last splice(2) then meets a pipe with no reader: SIGPIPE after a whole
        # stream. (send still holds the pipe open, so receive did not stop at EOF.)
        if failed and not (dumper.returncode == 0 and sender.returncode == -signal.SIGPIPE):
            stderr = "; ".join(
                f"{what}: {_read(err) or f'exit {process.returncode}'}"
                for what, process, err in failed
            )
            raise BtrfsCommandError(shown, failed[0][1].returncode, stderr)
    if unfinished:
        yield unfinished


def changes(parent: Path | None, child: Path, *, timeout: float = CHANGES_TIMEOUT) -> list[Change]:
    """The paths that differ between two commit snapshots, sorted by path.

    Costs time in proportion to the change: the listing, plus one ``lstat`` in each
    snapshot for every entry whose only change is its times (to tell a real mtime
    change from a ctime-only one) or that is a directory deleted and made again.

    Args:
        parent: the older read-only snapshot, or None for "everything in ``child``
            was added" (a first commit: then ``child`` is walked, not sent).
        child: the newer read-only snapshot, on the same file system.
        timeout: seconds for the listing.
    Returns:
        One ``Change`` per path (see ``pfs_volume.diff`` for what is reported).
    Raises:
        BtrfsCommandError: when the listing fails or times out.
        DumpFormatError: when the listing cannot be followed.
    """
    if parent is None:
        return _everything(child)
    lines = dump_lines(parent, child, timeout=timeout)
    check = _metadata_check(parent, child) if parent is not None else None
    return changes_from_dump(lines, metadata_changed=check)


def bytes_written(
    parent: Path | None,
    child: Path,
    *,
    timeout: float = CHANGES_TIMEOUT,
    cancel: threading.Event | None = None,
) -> int:
    """The bytes of file data ``child`` wrote over ``parent``: the lengths of the ranges
    its listing shows written (``update_extent``; a reflinked ``clone`` shares data
    and is not counted); with no parent, the sizes of all its regular files (walked, as
    ``changes`` does). Raises BtrfsCommandError as ``dump_lines`` (the walk too, past
    ``timeout`` or once ``cancel`` is set)."""
    if parent is None:
        total = 0
        deadline = time.monotonic() + timeout
        for _folder, fd, name in walk_tree(child):
            if time.monotonic() > deadline:
                raise BtrfsCommandError(
                    ["walk", str(child)], -1, f"the walk took longer than {timeout:.0f} s"
                )
            if cancel is not None and cancel.is_set():
                raise BtrfsCommandError(["walk", str(child)], -1, CANCELLED)
            info = os.lstat(name, dir_fd=fd)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
        return total
    total = 0
    for line in dump_lines(parent, child, timeout=timeout, cancel=cancel):
        if line.startswith("update_extent"):
            found = _EXTENT_LENGTH.search(line)
            total += int(found.group(1)) if found else 0
    return total


_EXTENT_LENGTH = re.compile(r" len=(\d+)$")


def _everything(child: Path) -> list[Change]:
    """Every path of ``child`` as added (what a full ``send`` lists), found by walking
    it: ``send`` builds each path from the root, so a deep folder costs it time in the
    square of its depth (half a minute for 2,000 levels), a walk only one step a level."""
    found = [
        Change(f"{folder}/{name}" if folder else name, "added")
        for folder, _fd, name in walk_tree(child)
    ]
    return sorted(found)


def _metadata_check(parent: Path, child: Path) -> MetadataChanged:
    def metadata_changed(old_path: str, new_path: str) -> bool:
        try:
            before = _lstat_under(parent, old_path)
            after = _lstat_under(child, new_path)
        except (OSError, PfsError):
            return True
        # A directory's mtime moves whenever an entry comes or goes: never counted.
        times = not stat.S_ISDIR(after.st_mode) and before.st_mtime_ns != after.st_mtime_ns
        owner = (before.st_mode, before.st_uid, before.st_gid)
        return times or owner != (after.st_mode, after.st_uid, after.st_gid)

    return metadata_changed


def _lstat_under(root: Path, path: str) -> os.stat_result:
    """``lstat`` of ``path`` under ``root``; one too long for a single call (a deep
    folder) is reached folder by folder, never through a link."""
    whole = root / path
    if len(os.fsencode(whole)) < PATH_MAX:
        return os.lstat(whole)
    parts = tuple(path.split("/"))
    with closing(open_parent(root, parts)) as folder:
        return os.lstat(parts[-1], dir_fd=folder)


def _lines(
    stream: IO[bytes],
    deadline: float,
    shown: list[str],
    timeout: float,
    cancel: threading.Event | None,
) -> Generator[str, None, str]:
    """Yield the stream's complete lines as they come, raising once ``deadline`` passes
    or ``cancel`` is set; return the text after the last line end (held back until the
    commands succeeded)."""
    partial = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while True:
            if cancel is not None and cancel.is_set():
                raise BtrfsCommandError(shown, -1, CANCELLED)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timed_out(shown, timeout)
            if not selector.select(remaining if cancel is None else min(remaining, CANCEL_CHECK)):
                continue
            chunk = os.read(stream.fileno(), READ_SIZE)
            if not chunk:
                break
            *complete, partial = (partial + chunk).split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "surrogateescape")
    return partial.decode("utf-8", "surrogateescape")


def _timed_out(shown: list[str], timeout: float) -> BtrfsCommandError:
    return BtrfsCommandError(shown, -1, f"timed out after {timeout:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace").strip()
