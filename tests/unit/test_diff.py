# ruff: noqa: E501
# (the dumps below are copied verbatim from btrfs-progs 6.2; their lines are long)
"""The dump classifier (pfs_volume.diff) on listings copied from real
``btrfs send --no-data -p A B | btrfs receive --dump`` output (btrfs-progs 6.2)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.diff import Change, ChangeKind, changes_from_dump
from pfs_volume.dump import DumpRecord, parse_dump, unescape_path
from pfs_volume.errors import DumpFormatError

# A -> B: modify, delete, rename (as rename and as link+unlink), rename+modify, add a
# hard link, chmod, touch -m, delete a directory tree, add files and a directory, names
# with spaces, a newline, a backslash and UTF-8.
MIXED = r"""snapshot        ./B                             uuid=66a20979-de16-1144-adfb-0f94d96d70d2 transid=8 parent_uuid=21e32083-0ac6-ff48-82f3-016196e1ec1c parent_transid=7
rename          ./B/d1                          dest=./B/d1moved
rename          ./B/gone                        dest=./B/o259-7-0
utimes          ./B/keep                        atime=2026-11-22T07:48:29+0000 mtime=2020-01-01T00:00:00+0000 ctime=2026-11-22T07:48:29+0000
update_extent   ./B/mod                         offset=0 len=5
utimes          ./B/mod                         atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
unlink          ./B/del
link            ./B/ren2                        dest=ren
unlink          ./B/ren
utimes          ./B/ren2                        atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
link            ./B/d2/renmod2                  dest=renmod
unlink          ./B/renmod
update_extent   ./B/d2/renmod2                  offset=0 len=5
utimes          ./B/d2/renmod2                  atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
link            ./B/with\ \ space2              dest=with\ space
unlink          ./B/with\ space
utimes          ./B/with\ \ space2              atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
link            ./B/hl2                         dest=hl
utimes          ./B/hl                          atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
chmod           ./B/chm                         mode=600
utimes          ./B/chm                         atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
unlink          ./B/o259-7-0/x
rmdir           ./B/o259-7-0
mkfile          ./B/o270-8-0
rename          ./B/o270-8-0                    dest=./B/new
update_extent   ./B/new                         offset=0 len=4
chown           ./B/new                         gid=0 uid=0
chmod           ./B/new                         mode=644
utimes          ./B/new                         atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
mkdir           ./B/o271-8-0
rename          ./B/o271-8-0                    dest=./B/newdir
chown           ./B/newdir                      gid=0 uid=0
chmod           ./B/newdir                      mode=755
mkfile          ./B/o272-8-0
rename          ./B/o272-8-0                    dest=./B/newdir/z
update_extent   ./B/newdir/z                    offset=0 len=2
chown           ./B/newdir/z                    gid=0 uid=0
chmod           ./B/newdir/z                    mode=644
utimes          ./B/newdir/z                    atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
mkfile          ./B/o273-8-0
rename          ./B/o273-8-0                    dest=./B/sp\ ace\ new
update_extent   ./B/sp\ ace\ new                offset=0 len=2
chown           ./B/sp\ ace\ new                gid=0 uid=0
chmod           ./B/sp\ ace\ new                mode=644
utimes          ./B/sp\ ace\ new                atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
mkfile          ./B/o274-8-0
rename          ./B/o274-8-0                    dest=./B/nl\nname
update_extent   ./B/nl\nname                    offset=0 len=2
chown           ./B/nl\nname                    gid=0 uid=0
chmod           ./B/nl\nname                    mode=644
utimes          ./B/nl\nname                    atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
mkfile          ./B/o275-8-0
rename          ./B/o275-8-0                    dest=./B/h\303\251llo
update_extent   ./B/h\303\251llo                offset=0 len=2
chown           ./B/h\303\251llo                gid=0 uid=0
chmod           ./B/h\303\251llo                mode=644
utimes          ./B/h\303\251llo                atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
mkfile          ./B/o276-8-0
rename          ./B/o276-8-0                    dest=./B/back\\slash
update_extent   ./B/back\\slash                 offset=0 len=2
chown           ./B/back\\slash                 gid=0 uid=0
chmod           ./B/back\\slash                 mode=644
utimes          ./B/back\\slash                 atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
utimes          ./B/                            atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
utimes          ./B/newdir                      atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
utimes          ./B/d2                          atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
utimes          ./B/d1moved                     atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:48:29+0000
"""

# E -> F: swap p and q, rename src over an existing file, replace a file by a
# directory, delete a nested tree, move a file out of a directory that is deleted,
# delete one name of a hard-linked file and move the other into a new directory,
# rename a directory and modify a file in it, chmod a directory, touch -m a directory,
# truncate a file, move a directory into a new directory.
ORPHANS = r"""snapshot        ./F                             uuid=e29f371e-7db4-354c-9ad4-372361f2fb48 transid=12 parent_uuid=5e932c65-d67b-1b48-8a40-d9b3ecc05cc3 parent_transid=11
rename          ./F/d2                          dest=./F/dd2
update_extent   ./F/dd2/renmod2                 offset=0 len=10
utimes          ./F/dd2/renmod2                 atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
mkdir           ./F/o300-12-0
link            ./F/o300-12-0/hl2moved          dest=hl
unlink          ./F/hl
unlink          ./F/hl2
utimes          ./F/o300-12-0/hl2moved          atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:50:17+0000
mkdir           ./F/o301-12-0
rename          ./F/newdir                      dest=./F/o301-12-0/newdir
rename          ./F/t1                          dest=./F/o281-11-0
rename          ./F/o281-11-0/t2                dest=./F/o282-11-0
rename          ./F/o282-11-0/t3                dest=./F/o283-11-0
rmdir           ./F/o282-11-0
unlink          ./F/o283-11-0/f
rmdir           ./F/o283-11-0
unlink          ./F/o281-11-0/f1
rmdir           ./F/o281-11-0
rename          ./F/outer                       dest=./F/o286-11-0
rename          ./F/o286-11-0/in                dest=./F/o287-11-0
link            ./F/kept                        dest=o287-11-0/keepme
unlink          ./F/o287-11-0/keepme
rmdir           ./F/o287-11-0
utimes          ./F/kept                        atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
unlink          ./F/o286-11-0/x
rmdir           ./F/o286-11-0
rename          ./F/q                           dest=./F/o291-11-0
link            ./F/q                           dest=p
unlink          ./F/p
utimes          ./F/q                           atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
rename          ./F/o291-11-0                   dest=./F/p
utimes          ./F/p                           atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
unlink          ./F/typechg
unlink          ./F/over
link            ./F/over                        dest=src
unlink          ./F/src
utimes          ./F/over                        atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
chmod           ./F/dmod                        mode=700
utimes          ./F/dtouch                      atime=2026-11-22T07:50:17+0000 mtime=2021-01-01T00:00:00+0000 ctime=2026-11-22T07:50:17+0000
truncate        ./F/trunc                       size=0
utimes          ./F/trunc                       atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
mkdir           ./F/o299-12-0
rename          ./F/o299-12-0                   dest=./F/typechg
chown           ./F/typechg                     gid=0 uid=0
chmod           ./F/typechg                     mode=755
utimes          ./F/typechg                     atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
rename          ./F/o300-12-0                   dest=./F/nd
chown           ./F/nd                          gid=0 uid=0
chmod           ./F/nd                          mode=755
rename          ./F/o301-12-0                   dest=./F/nd/sub
chown           ./F/nd/sub                      gid=0 uid=0
chmod           ./F/nd/sub                      mode=755
utimes          ./F/nd/sub                      atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
utimes          ./F/nd                          atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
utimes          ./F/                            atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
utimes          ./F/dmod                        atime=2026-11-22T07:50:17+0000 mtime=2026-11-22T07:50:17+0000 ctime=2026-11-22T07:50:17+0000
utimes          ./F/nd/sub/newdir               atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:50:17+0000
utimes          ./F/dd2                         atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:50:17+0000
"""

# C -> D: extended attributes whose values hold newlines (one crafted to look like an
# operation), a save-by-rename over "mod", a symlink whose target has a space and a
# newline. The value b"\x01\x02\n\x00zz" prints up to its NUL.
XATTRS = (
    r"""snapshot        ./D                             uuid=92ec43a2-00ea-7640-baee-8511556d081d transid=10 parent_uuid=3a9df70a-14b4-d043-b3ad-54ab18b7ebe5 parent_transid=8
set_xattr       ./D/keep                        name=user.note data=line1
mkfile          ./D/fake len=30
utimes          ./D/keep                        atime=2026-11-22T07:48:29+0000 mtime=2020-01-01T00:00:00+0000 ctime=2026-11-22T07:49:55+0000
unlink          ./D/mod
set_xattr       ./D/chm                         name=user.bin data="""
    + "\x01\x02"
    + r"""
 len=6
utimes          ./D/chm                         atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:48:29+0000 ctime=2026-11-22T07:49:55+0000
symlink         ./D/o277-10-0                   dest=tar\ get\nx
rename          ./D/o277-10-0                   dest=./D/sl
chown           ./D/sl                          gid=0 uid=0
utimes          ./D/sl                          atime=2026-11-22T07:49:54+0000 mtime=2026-11-22T07:49:54+0000 ctime=2026-11-22T07:49:54+0000
mkfile          ./D/o278-10-0
rename          ./D/o278-10-0                   dest=./D/mod
update_extent   ./D/mod                         offset=0 len=4
chown           ./D/mod                         gid=0 uid=0
chmod           ./D/mod                         mode=644
utimes          ./D/mod                         atime=2026-11-22T07:49:55+0000 mtime=2026-11-22T07:49:55+0000 ctime=2026-11-22T07:49:55+0000
utimes          ./D/                            atime=2026-11-22T07:48:29+0000 mtime=2026-11-22T07:49:55+0000 ctime=2026-11-22T07:49:55+0000
"""
)

# H1 -> H2: "one" and "two" are one inode; one is removed and two moved into sub/;
# a rename to a name with a tab; a new file whose name is not UTF-8 (b"caf\xe9").
HARD_LINKS = r"""snapshot        ./H2                            uuid=93837a9a-d485-8a41-a083-c3da794b3fb7 transid=16 parent_uuid=da038dbc-8c4c-554e-b562-4d89e08b83cb parent_transid=15
link            ./H2/sub/two                    dest=one
unlink          ./H2/one
unlink          ./H2/two
utimes          ./H2/sub/two                    atime=2026-11-22T07:54:19+0000 mtime=2026-11-22T07:54:19+0000 ctime=2026-11-22T07:54:19+0000
link            ./H2/tab\tname                  dest=plain
unlink          ./H2/plain
utimes          ./H2/tab\tname                  atime=2026-11-22T07:54:19+0000 mtime=2026-11-22T07:54:19+0000 ctime=2026-11-22T07:54:19+0000
mkfile          ./H2/o260-16-0
rename          ./H2/o260-16-0                  dest=./H2/caf\351
update_extent   ./H2/caf\351                    offset=0 len=1
chown           ./H2/caf\351                    gid=0 uid=0
chmod           ./H2/caf\351                    mode=644
utimes          ./H2/caf\351                    atime=2026-11-22T07:54:19+0000 mtime=2026-11-22T07:54:19+0000 ctime=2026-11-22T07:54:19+0000
utimes          ./H2/                           atime=2026-11-22T07:54:19+0000 mtime=2026-11-22T07:54:19+0000 ctime=2026-11-22T07:54:19+0000
utimes          ./H2/sub                        atime=2026-11-22T07:54:19+0000 mtime=2026-11-22T07:54:19+0000 ctime=2026-11-22T07:54:19+0000
"""

# A first commit (no parent): a/b/f and "hard" are one inode.
FULL = r"""subvol          ./G                             uuid=c5935ced-8d96-1048-9c3a-ebaea4db43bd transid=13
chown           ./G/                            gid=0 uid=0
chmod           ./G/                            mode=755
mkdir           ./G/o257-13-0
rename          ./G/o257-13-0                   dest=./G/a
chown           ./G/a                           gid=0 uid=0
chmod           ./G/a                           mode=755
mkdir           ./G/o258-13-0
rename          ./G/o258-13-0                   dest=./G/a/b
chown           ./G/a/b                         gid=0 uid=0
chmod           ./G/a/b                         mode=755
mkfile          ./G/o259-13-0
rename          ./G/o259-13-0                   dest=./G/hard
link            ./G/a/b/f                       dest=hard
update_extent   ./G/hard                        offset=0 len=2
chown           ./G/hard                        gid=0 uid=0
chmod           ./G/hard                        mode=644
utimes          ./G/hard                        atime=2026-11-22T07:50:35+0000 mtime=2026-11-22T07:50:35+0000 ctime=2026-11-22T07:50:35+0000
mkfile          ./G/o260-13-0
rename          ./G/o260-13-0                   dest=./G/top\ file
update_extent   ./G/top\ file                   offset=0 len=2
chown           ./G/top\ file                   gid=0 uid=0
chmod           ./G/top\ file                   mode=644
utimes          ./G/top\ file                   atime=2026-11-22T07:50:35+0000 mtime=2026-11-22T07:50:35+0000 ctime=2026-11-22T07:50:35+0000
utimes          ./G/                            atime=2026-11-22T07:50:35+0000 mtime=2026-11-22T07:50:35+0000 ctime=2026-11-22T07:50:35+0000
utimes          ./G/a/b                         atime=2026-11-22T07:50:35+0000 mtime=2026-11-22T07:50:35+0000 ctime=2026-11-22T07:50:35+0000
utimes          ./G/a                           atime=2026-11-22T07:50:35+0000 mtime=2026-11-22T07:50:35+0000 ctime=2026-11-22T07:50:35+0000
"""

# R1 -> R2: directories r and s removed with their files and made again (s with mode
# 700); t made, and a file made and removed in it.
REMADE = r"""snapshot        ./R2                            uuid=ebf60689-38f2-2e43-997d-b7f33b6889d1 transid=1398 parent_uuid=4525f9c9-ac7c-4e4b-8228-685c480c23a9 parent_transid=1397
rename          ./R2/r                          dest=./R2/o257-1397-0
rename          ./R2/s                          dest=./R2/o258-1397-0
unlink          ./R2/o257-1397-0/f
rmdir           ./R2/o257-1397-0
unlink          ./R2/o258-1397-0/f
rmdir           ./R2/o258-1397-0
mkdir           ./R2/o261-1398-0
rename          ./R2/o261-1398-0                dest=./R2/r
chown           ./R2/r                          gid=0 uid=0
chmod           ./R2/r                          mode=755
mkdir           ./R2/o262-1398-0
rename          ./R2/o262-1398-0                dest=./R2/s
chown           ./R2/s                          gid=0 uid=0
chmod           ./R2/s                          mode=700
utimes          ./R2/s                          atime=2026-11-22T07:58:32+0000 mtime=2026-11-22T07:58:32+0000 ctime=2026-11-22T07:58:32+0000
mkfile          ./R2/o263-1398-0
rename          ./R2/o263-1398-0                dest=./R2/r/g
update_extent   ./R2/r/g                        offset=0 len=2
chown           ./R2/r/g                        gid=0 uid=0
chmod           ./R2/r/g                        mode=644
utimes          ./R2/r/g                        atime=2026-11-22T07:58:32+0000 mtime=2026-11-22T07:58:32+0000 ctime=2026-11-22T07:58:32+0000
mkdir           ./R2/o264-1398-0
rename          ./R2/o264-1398-0                dest=./R2/t
chown           ./R2/t                          gid=0 uid=0
chmod           ./R2/t                          mode=755
utimes          ./R2/t                          atime=2026-11-22T07:58:32+0000 mtime=2026-11-22T07:58:32+0000 ctime=2026-11-22T07:58:32+0000
utimes          ./R2/                           atime=2026-11-22T07:58:32+0000 mtime=2026-11-22T07:58:32+0000 ctime=2026-11-22T07:58:32+0000
utimes          ./R2/r                          atime=2026-11-22T07:58:32+0000 mtime=2026-11-22T07:58:32+0000 ctime=2026-11-22T07:58:32+0000
"""

# N1 -> N2: directory x renamed to z and y to x; the file in the old x deleted, a new
# file of the same name made in the new x.
SWAPPED_DIRS = r"""snapshot        ./N2                            uuid=7a582756-0d6a-2941-89bc-bfa2c61b1b7b transid=20389 parent_uuid=6cc2f727-a547-8c44-9203-b5af3fc83b36 parent_transid=20388
rename          ./N2/x                          dest=./N2/z
utimes          ./N2/z                          atime=2026-11-22T08:06:01+0000 mtime=2026-11-22T08:06:01+0000 ctime=2026-11-22T08:06:01+0000
rename          ./N2/y                          dest=./N2/x
unlink          ./N2/z/f
mkfile          ./N2/o260-20389-0
rename          ./N2/o260-20389-0               dest=./N2/x/f
update_extent   ./N2/x/f                        offset=0 len=2
chown           ./N2/x/f                        gid=0 uid=0
chmod           ./N2/x/f                        mode=644
utimes          ./N2/x/f                        atime=2026-11-22T08:06:01+0000 mtime=2026-11-22T08:06:01+0000 ctime=2026-11-22T08:06:01+0000
utimes          ./N2/x                          atime=2026-11-22T08:06:01+0000 mtime=2026-11-22T08:06:01+0000 ctime=2026-11-22T08:06:01+0000
utimes          ./N2/z                          atime=2026-11-22T08:06:01+0000 mtime=2026-11-22T08:06:01+0000 ctime=2026-11-22T08:06:01+0000
utimes          ./N2/                           atime=2026-11-22T08:06:01+0000 mtime=2026-11-22T08:06:01+0000 ctime=2026-11-22T08:06:01+0000
"""

NOTHING = """snapshot        ./F2                            uuid=3ad76ca0-edae-cc45-b9b8-bbc88eedfe15 transid=12 parent_uuid=e29f371e-7db4-354c-9ad4-372361f2fb48 parent_transid=12
"""


def lines(dump: str) -> list[str]:
    """Split as the pipeline reader does: on newlines only."""
    return dump.split("\n")[:-1]


class MetadataCheck:
    """A fake ``metadata_changed``: true for the given (parent) paths; records calls."""

    def __init__(self, *moved: str) -> None:
        self.moved = set(moved)
        self.asked: list[tuple[str, str]] = []

    def __call__(self, old_path: str, new_path: str) -> bool:
        self.asked.append((old_path, new_path))
        return old_path in self.moved


def renamed(path: str, old: str, *, modified: bool = False) -> Change:
    return Change(path, "renamed", old, modified)


def of_kind(kind: ChangeKind, paths: Iterable[str]) -> list[Change]:
    return [Change(p, kind) for p in paths]


def test_mixed_changes() -> None:
    check = MetadataCheck("keep")
    assert changes_from_dump(lines(MIXED), metadata_changed=check) == [
        Change("back\\slash", "added"),
        Change("chm", "modified"),
        renamed("d1moved", "d1"),
        renamed("d2/renmod2", "renmod", modified=True),
        Change("del", "deleted"),
        Change("gone", "deleted"),
        Change("gone/x", "deleted"),
        Change("hl2", "added"),
        Change("héllo", "added"),
        Change("keep", "modified"),
        Change("mod", "modified"),
        Change("new", "added"),
        Change("newdir", "added"),
        Change("newdir/z", "added"),
        Change("nl\nname", "added"),
        renamed("ren2", "ren"),
        Change("sp ace new", "added"),
        renamed("with  space2", "with space"),
    ]
    # Asked only about entries whose one change is their times (files and a renamed
    # directory, d1moved, whose entries did not change), never about d2, newdir or the
    # root, whose times moved because their entries did.
    assert sorted(check.asked) == [
        ("d1", "d1moved"),
        ("hl", "hl"),
        ("keep", "keep"),
        ("ren", "ren2"),
        ("with space", "with  space2"),
    ]


def test_utimes_alone_counts_only_when_the_check_says_so() -> None:
    found = changes_from_dump(lines(MIXED))
    assert Change("keep", "modified") not in found
    assert Change("hl", "modified") not in found
    assert Change("chm", "modified") in found


def test_orphan_renames_deletes_swaps_and_directories() -> None:
    check = MetadataCheck()
    assert changes_from_dump(lines(ORPHANS), metadata_changed=check) == [
        renamed("dd2", "d2"),
        Change("dd2/renmod2", "modified"),
        Change("dmod", "modified"),
        Change("hl2", "deleted"),
        renamed("kept", "outer/in/keepme"),
        Change("nd", "added"),
        renamed("nd/hl2moved", "hl"),
        Change("nd/sub", "added"),
        renamed("nd/sub/newdir", "newdir"),
        Change("outer", "deleted"),
        Change("outer/in", "deleted"),
        Change("outer/x", "deleted"),
        renamed("over", "src"),
        renamed("p", "q"),
        renamed("q", "p"),
        Change("t1", "deleted"),
        Change("t1/f1", "deleted"),
        Change("t1/t2", "deleted"),
        Change("t1/t2/t3", "deleted"),
        Change("t1/t2/t3/f", "deleted"),
        Change("trunc", "modified"),
        Change("typechg", "modified"),
    ]
    # Entries whose only change is their times; never the root, whose entries changed.
    assert sorted(check.asked) == [
        ("d2", "dd2"),
        ("dtouch", "dtouch"),
        ("hl", "nd/hl2moved"),
        ("newdir", "nd/sub/newdir"),
        ("outer/in/keepme", "kept"),
        ("p", "q"),
        ("q", "p"),
        ("src", "over"),
    ]


def test_the_check_decides_entries_whose_only_change_is_their_times() -> None:
    # (The real check never counts a directory's mtime, as dtouch's here.)
    flagged = changes_from_dump(lines(ORPHANS), metadata_changed=MetadataCheck("dtouch"))
    assert Change("dtouch", "modified") in flagged
    assert Change("dtouch", "modified") not in changes_from_dump(lines(ORPHANS))


def test_directories_deleted_and_made_again() -> None:
    check = MetadataCheck("s")
    assert changes_from_dump(lines(REMADE), metadata_changed=check) == [
        Change("r/f", "deleted"),
        Change("r/g", "added"),
        Change("s", "modified"),
        Change("s/f", "deleted"),
        Change("t", "added"),
    ]
    assert sorted(check.asked) == [("r", "r"), ("s", "s")]
    assert Change("s", "modified") not in changes_from_dump(lines(REMADE))


def test_xattr_values_that_spill_over_lines_are_skipped() -> None:
    assert changes_from_dump(lines(XATTRS), metadata_changed=MetadataCheck()) == [
        Change("chm", "modified"),
        Change("keep", "modified"),
        Change("mod", "modified"),  # saved by rename: a new inode at the same path
        Change("sl", "added"),
    ]


def test_hard_links_tabs_and_names_that_are_not_utf8() -> None:
    assert changes_from_dump(lines(HARD_LINKS), metadata_changed=MetadataCheck()) == [
        Change("caf\udce9", "added"),
        renamed("sub/two", "one"),
        renamed("tab\tname", "plain"),
        Change("two", "deleted"),
    ]


def test_deleted_paths_are_in_the_parent_and_the_others_in_the_child() -> None:
    # "x/f" twice: the deleted one is the parent's x/f (in what is now z), the added
    # one is in the child's x (the parent's y). Not a file replaced in place.
    assert changes_from_dump(lines(SWAPPED_DIRS), metadata_changed=MetadataCheck()) == [
        renamed("x", "y"),
        Change("x/f", "added"),
        Change("x/f", "deleted"),
        renamed("z", "x"),
    ]


def test_first_commit_lists_everything_as_added() -> None:
    assert changes_from_dump(lines(FULL)) == of_kind(
        "added", ["a", "a/b", "a/b/f", "hard", "top file"]
    )


def test_no_change() -> None:
    assert changes_from_dump(lines(NOTHING)) == []


def test_line_ends_are_optional() -> None:
    with_ends = MIXED.splitlines(keepends=True)
    assert changes_from_dump(with_ends) == changes_from_dump(lines(MIXED))


def test_parse_dump_unprefixes_and_unescapes() -> None:
    records = list(parse_dump(lines(MIXED)))
    assert records[0] == DumpRecord("snapshot", "")
    assert DumpRecord("rename", "d1", "d1moved") in records
    assert DumpRecord("link", "with  space2", "with space") in records
    assert DumpRecord("rename", "o274-8-0", "nl\nname") in records
    assert DumpRecord("utimes", "") in records


@pytest.mark.parametrize(
    ("escaped", "path"),
    [
        (r"with\ \ space2", "with  space2"),
        (r"nl\nname", "nl\nname"),
        (r"h\303\251llo", "héllo"),
        (r"back\\slash", "back\\slash"),
        (r"tab\tname", "tab\tname"),
        (r"caf\351", "caf\udce9"),
        (r"\a\b\e\f\r\v\177", "\a\b\x1b\f\r\v\x7f"),
    ],
)
def test_unescape_path(escaped: str, path: str) -> None:
    assert unescape_path(escaped) == path


def btrfs_escape(name: bytes) -> str:
    """btrfs-progs' print_path_escaped (cmds/receive-dump.c), in the C locale."""
    named = {7: "a", 8: "b", 27: "e", 12: "f", 10: "n", 13: "r", 9: "t", 11: "v", 32: " "}
    named[0x5C] = "\\"
    out = []
    for byte in name:
        if byte in named:
            out.append("\\" + named[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


@given(st.binary(min_size=1, max_size=40).filter(lambda b: 0 not in b and 0x2F not in b))
def test_unescape_undoes_btrfs_escaping(name: bytes) -> None:
    assert unescape_path(btrfs_escape(name)) == name.decode("utf-8", "surrogateescape")


def test_escaped_paths_hold_no_space_or_newline() -> None:
    assert btrfs_escape(b"a b\nc") == r"a\ b\nc"


@pytest.mark.parametrize("escaped", ["trailing\\", r"bad\q", r"short\12"])
def test_malformed_escapes_are_refused(escaped: str) -> None:
    with pytest.raises(DumpFormatError, match="bad escape"):
        unescape_path(escaped)


HEADER = NOTHING.rstrip("\n")


@pytest.mark.parametrize(
    ("dump", "message"),
    [
        ([], "empty"),
        (["mkfile          ./F2/x"], "does not start with a subvolume"),
        ([HEADER, "not a dump line"], "unexpected line"),
        ([HEADER, "mkfile          ./OTHER/x"], "outside the subvolume"),
        ([HEADER, "mkfile          ./F2/x trailing"], "unexpected text"),
        ([HEADER, HEADER], "second subvolume"),
        ([HEADER, "rename          ./F2/a                          to=b"], "without dest"),
        ([HEADER, "unlink          ./F2/a", "unlink          ./F2/a"], "went away"),
        ([HEADER, "mkdir           ./F2/o1-1-0", "mkfile          ./F2/o1-1-0/a/b"], "not exist"),
        ([HEADER, "mkfile          ./F2/x", "mkfile          ./F2/x"], "exists"),
    ],
)
def test_malformed_dumps_are_refused(dump: list[str], message: str) -> None:
    with pytest.raises(DumpFormatError, match=message):
        changes_from_dump(dump)


def test_an_operation_this_module_does_not_know_counts_as_a_change() -> None:
    dump = [HEADER, "fileattr        ./F2/x                          fileattr=0x10"]
    assert changes_from_dump(dump) == [Change("x", "modified")]


def test_change_fields_fit_the_kind() -> None:
    with pytest.raises(ValueError, match="old_path"):
        Change("a", "renamed")
    with pytest.raises(ValueError, match="old_path"):
        Change("a", "added", "b")
    with pytest.raises(ValueError, match="modified flag"):
        Change("a", "modified", modified=True)
    assert sorted([Change("b", "added"), Change("a", "deleted")])[0].path == "a"
