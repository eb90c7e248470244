"""A small encoder of btrfs send streams (format version 1), for tests that hand
``btrfs receive`` streams no ``btrfs send`` would make.

The format (btrfs-progs ``send.h``, ``send-stream.c``; kernel ``fs/btrfs/send.h``): the
header ``b"btrfs-stream\\0"`` and a le32 version; then commands, each a le32 length of
its attributes, a le16 command number and a le32 CRC32C (seed 0, no final inversion)
of the whole command with the CRC field zeroed; attributes are TLVs (le16 type, le16
length, value). Strings carry no terminating NUL; u64s are little-endian; times are a
le64 seconds and le32 nanoseconds; UUIDs are 16 raw bytes.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass, field

MAGIC = b"btrfs-stream\0"
VERSION = 1

# Command numbers (enum btrfs_send_cmd).
SUBVOL, SNAPSHOT, MKFILE, MKDIR, MKNOD, MKFIFO, MKSOCK, SYMLINK = range(1, 9)
RENAME, LINK, UNLINK, RMDIR, SET_XATTR, REMOVE_XATTR, WRITE, CLONE = range(9, 17)
TRUNCATE, CHMOD, CHOWN, UTIMES, END, UPDATE_EXTENT = range(17, 23)

# Attribute types (enum btrfs_send_attr).
A_UUID, A_CTRANSID, A_INO, A_SIZE, A_MODE, A_UID, A_GID, A_RDEV = range(1, 9)
A_CTIME, A_MTIME, A_ATIME, A_OTIME, A_XATTR_NAME, A_XATTR_DATA = range(9, 15)
A_PATH, A_PATH_TO, A_PATH_LINK, A_FILE_OFFSET, A_DATA = range(15, 20)
A_CLONE_UUID, A_CLONE_CTRANSID, A_CLONE_PATH, A_CLONE_OFFSET, A_CLONE_LEN = range(20, 25)

Attr = tuple[int, bytes]


def _table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C (Castagnoli) as btrfs computes a command's: seed ``crc``, no inversion."""
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def command(cmd: int, *attrs: Attr) -> bytes:
    """One command with its attributes, its CRC filled in."""
    payload = b"".join(struct.pack("<HH", kind, len(value)) + value for kind, value in attrs)
    unsigned = struct.pack("<IHI", len(payload), cmd, 0) + payload
    return struct.pack("<IHI", len(payload), cmd, crc32c(unsigned)) + payload


def string(kind: int, value: str | bytes) -> Attr:
    """A string attribute (a path, a name)."""
    return kind, value.encode() if isinstance(value, str) else value


def u64(kind: int, value: int) -> Attr:
    """A little-endian u64 attribute."""
    return kind, struct.pack("<Q", value)


def uuid(kind: int, value: uuidlib.UUID) -> Attr:
    """A UUID attribute."""
    return kind, value.bytes


def timespec(kind: int, seconds: int = 1_700_000_000) -> Attr:
    """A time attribute."""
    return kind, struct.pack("<QI", seconds, 0)


@dataclass
class Stream:
    """A send stream being written: ``subvol`` or ``snapshot`` first, then file
    commands, then ``bytes()`` (which appends the end command unless ``end=False``).

    Paths are given as the stream carries them: relative to the new subvolume.
    """

    commands: list[bytes] = field(default_factory=list)

    def subvol(self, name: str, sent_uuid: uuidlib.UUID, ctransid: int = 7) -> Stream:
        """Start a full stream of subvolume ``name``."""
        self.commands.append(
            command(
                SUBVOL, string(A_PATH, name), uuid(A_UUID, sent_uuid), u64(A_CTRANSID, ctransid)
            )
        )
        return self

    def snapshot(
        self,
        name: str,
        sent_uuid: uuidlib.UUID,
        parent_uuid: uuidlib.UUID,
        parent_ctransid: int,
        ctransid: int = 9,
    ) -> Stream:
        """Start an incremental stream of ``name`` on the parent ``parent_uuid``."""
        self.commands.append(
            command(
                SNAPSHOT,
                string(A_PATH, name),
                uuid(A_UUID, sent_uuid),
                u64(A_CTRANSID, ctransid),
                uuid(A_CLONE_UUID, parent_uuid),
                u64(A_CLONE_CTRANSID, parent_ctransid),
            )
        )
        return self

    def add(self, cmd: int, *attrs: Attr) -> Stream:
        """Any command."""
        self.commands.append(command(cmd, *attrs))
        return self

    def path_only(self, cmd: int, path: str) -> Stream:
        """A command with a path alone: mkfile, mkdir, mkfifo, mksock, unlink, rmdir."""
        return self.add(cmd, string(A_PATH, path), u64(A_INO, 300))

    def mkfile(self, path: str) -> Stream:
        """Create an empty regular file."""
        return self.path_only(MKFILE, path)

    def mkdir(self, path: str) -> Stream:
        """Create a folder."""
        return self.path_only(MKDIR, path)

    def symlink(self, path: str, target: str) -> Stream:
        """Create a symbolic link to ``target``."""
        return self.add(SYMLINK, string(A_PATH, path), u64(A_INO, 301), string(A_PATH_LINK, target))

    def rename(self, path: str, to: str) -> Stream:
        """Rename ``path`` to ``to``."""
        return self.add(RENAME, string(A_PATH, path), string(A_PATH_TO, to))

    def link(self, path: str, existing: str) -> Stream:
        """Hard-link ``existing`` as ``path``."""
        return self.add(LINK, string(A_PATH, path), string(A_PATH_LINK, existing))

    def write(self, path: str, data: bytes, offset: int = 0) -> Stream:
        """Write ``data`` at ``offset``."""
        return self.add(WRITE, string(A_PATH, path), u64(A_FILE_OFFSET, offset), (A_DATA, data))

    def clone(
        self, path: str, source_uuid: uuidlib.UUID, source_ctransid: int, source: str, length: int
    ) -> Stream:
        """Clone ``length`` bytes of ``source`` in the subvolume ``source_uuid``."""
        return self.add(
            CLONE,
            string(A_PATH, path),
            u64(A_FILE_OFFSET, 0),
            u64(A_CLONE_LEN, length),
            uuid(A_CLONE_UUID, source_uuid),
            u64(A_CLONE_CTRANSID, source_ctransid),
            string(A_CLONE_PATH, source),
            u64(A_CLONE_OFFSET, 0),
        )

    def set_xattr(self, path: str, name: str, value: bytes) -> Stream:
        """Set the extended attribute ``name``."""
        return self.add(
            SET_XATTR, string(A_PATH, path), string(A_XATTR_NAME, name), (A_XATTR_DATA, value)
        )

    def truncate(self, path: str, size: int) -> Stream:
        """Truncate to ``size``."""
        return self.add(TRUNCATE, string(A_PATH, path), u64(A_SIZE, size))

    def chmod(self, path: str, mode: int) -> Stream:
        """Change the mode."""
        return self.add(CHMOD, string(A_PATH, path), u64(A_MODE, mode))

    def chown(self, path: str, uid: int, gid: int) -> Stream:
        """Change the owner."""
        return self.add(CHOWN, string(A_PATH, path), u64(A_UID, uid), u64(A_GID, gid))

    def utimes(self, path: str) -> Stream:
        """Set the times."""
        return self.add(
            UTIMES,
            string(A_PATH, path),
            timespec(A_ATIME),
            timespec(A_MTIME),
            timespec(A_CTIME),
        )

    def bytes(self, end: bool = True) -> bytes:
        """The whole stream."""
        tail = [command(END)] if end else []
        return MAGIC + struct.pack("<I", VERSION) + b"".join(self.commands + tail)
