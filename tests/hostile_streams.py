"""A catalogue of hostile btrfs send streams (and a benign first commit they follow),
shared by the tests that hand them to a receive: each must be refused and reach nothing
outside the commit it would make."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests import sendstream
from tests.sendstream import Stream

FIRST = "a" * 32
SECOND = "b" * 32

FIRST_UUID = uuid.UUID("11111111-2222-3333-4444-555555555555")


@dataclass(frozen=True)
class Target:
    """What a hostile stream aims at."""

    host: Path
    """A folder on the host (outside the pool) with a canary file."""
    other_uuid: uuid.UUID
    """The received UUID of a commit of another repo in the pool."""


def first_commit() -> bytes:
    """A benign full stream of commit FIRST: a folder with a file."""
    return (
        Stream()
        .subvol(FIRST, FIRST_UUID)
        .mkdir("d")
        .mkfile("d/f")
        .write("d/f", b"first")
        .utimes("")
        .bytes()
    )


def full(name: str = SECOND) -> Stream:
    """A full stream of SECOND, to add hostile commands to."""
    return Stream().subvol(name, uuid.uuid4())


def on_first() -> Stream:
    """An incremental stream of SECOND on FIRST."""
    return Stream().snapshot(SECOND, uuid.uuid4(), FIRST_UUID, 7)


Hostile = Callable[[Target], bytes]
HOSTILE: dict[str, Hostile] = {
    "mkfile ../../x": lambda t: full().mkfile("../../evil").bytes(),
    "mkfile absolute": lambda t: full().mkfile(str(t.host / "evil")).bytes(),
    "mkdir ..": lambda t: full().mkdir("..").bytes(),
    "symlink to the host then write through it": lambda t: (
        full().symlink("x", str(t.host)).mkfile("x/evil").write("x/evil", b"evil").bytes()
    ),
    "symlink to /etc then write through it": lambda t: (
        full().symlink("x", "/etc").mkfile("x/evil").write("x/evil", b"evil").bytes()
    ),
    "symlink to / then mkfile in the folder of commits": lambda t: (
        full().symlink("x", "/").mkfile("x/evil").bytes()
    ),
    "symlink to / then rename a sibling commit": lambda t: (
        full().symlink("x", "/").rename(f"x/{FIRST}", "x/stolen").bytes()
    ),
    "symlink to / then rename a sibling's file out": lambda t: (
        full().symlink("x", "/").rename(f"x/{FIRST}/d/f", "stolen").bytes()
    ),
    "rename ..": lambda t: full().mkfile("f").rename("f", f"../{FIRST}/evil").bytes(),
    "link from a sibling": lambda t: full().link("l", f"../{FIRST}/d/f").bytes(),
    "link through a symlink": lambda t: (
        full().symlink("x", "/").link("l", f"x/{FIRST}/d/f").bytes()
    ),
    "write through a final symlink to the host": lambda t: (
        full().symlink("x", str(t.host / "canary")).write("x", b"evil").bytes()
    ),
    "truncate through a final symlink": lambda t: (
        full().symlink("x", str(t.host / "canary")).truncate("x", 0).bytes()
    ),
    "chmod through a final symlink": lambda t: (
        full().symlink("x", str(t.host / "canary")).chmod("x", 0o777).bytes()
    ),
    "chmod ..": lambda t: full().chmod("..", 0o777).bytes(),
    "chown ..": lambda t: full().chown("..", 1234, 1234).bytes(),
    "set_xattr ..": lambda t: full().set_xattr("..", "user.evil", b"1").bytes(),
    "set_xattr through a symlink": lambda t: (
        full().symlink("x", str(t.host)).set_xattr("x/canary", "user.evil", b"1").bytes()
    ),
    "clone from a host file": lambda t: (
        full().mkfile("f").clone("f", FIRST_UUID, 7, "../../../../../../etc/hostname", 4).bytes()
    ),
    "clone from another repo": lambda t: (
        full().mkfile("f").clone("f", t.other_uuid, 7, "f", 4096).bytes()
    ),
    "snapshot of another repo's commit": lambda t: (
        Stream().snapshot(SECOND, uuid.uuid4(), t.other_uuid, 7).mkfile("evil").bytes()
    ),
    "incremental: write through a symlink of the base": lambda t: (
        on_first().rename("d", "o1").symlink("d", "/").mkfile("d/evil").bytes()
    ),
    "subvol named ../x": lambda t: full("../evil").bytes(),
    "subvol named /x": lambda t: full(str(t.host / "evil")).bytes(),
    "subvol of another name": lambda t: full("c" * 32).bytes(),
    "a second subvolume": lambda t: (
        full().add(sendstream.END).subvol("c" * 32, uuid.uuid4()).bytes()
    ),
    "commands after the end": lambda t: full().add(sendstream.END).mkfile("late").bytes(),
}
INCREMENTAL = {
    "incremental: write through a symlink of the base",
    "snapshot of another repo's commit",
}
