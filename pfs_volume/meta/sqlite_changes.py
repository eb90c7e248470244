"""The SQLite store's change log for List (``change_log``): which repos, parts of repos
(a branch or commit record) and volume names each write touched.

Temporary triggers (they live with the connection, nothing is written to the file) call
back into Python for every row inserted, updated or deleted, inside the write's
transaction: the store's lock is held until it commits, and ``changed_since`` takes the
same lock, so a write is noted before a reader can see it. A write rolled back was noted
all the same (more work, never a lost change).

Every table of the database gets triggers, chosen by what its rows are to List: a table
this module does not know notes ``everything``, so a table added later can cost List its
kept answer but never make it wrong. A row that ``INSERT OR REPLACE`` deletes fires no
delete trigger (recursive triggers are off), but every table's key holds the column that
names its repo or volume, so the insert that replaced it names the same one.
"""

from __future__ import annotations

import sqlite3

from pfs_volume.meta.change_log import BRANCH, COMMIT, ChangeLog

REPO_COLUMN = {"repos": "name", "deleted_repos": "name"}
"""Tables whose rows stand for a whole repo, and the column that names it."""
PART_COLUMNS = {"branches": (BRANCH, "name"), "commits": (COMMIT, "id")}
"""Tables whose rows are one part of a repo (column ``repo``): the part's kind and the
column that names it (both in the table's key)."""
VOLUME_NAMES = "volumes"
UNREAD = ("mounts", "documents", "intents", "commit_sizes", "repo_sizes")
"""Tables List never reads what it shows from: mount records (a mountpoint is where the
target is, mounted or not), documents (pipeline specs and the like), commit intents (a
commit being made is not in the log until its record is) and sizes (``repo_sizes`` also
holds the commit count, which only chooses how List reads, never what it finds)."""
EVENTS = ("INSERT", "UPDATE", "DELETE")


def track_changes(db: sqlite3.Connection, log: ChangeLog) -> None:
    """Note every write to ``db``'s tables in ``log`` from now on, while the connection
    lives. Call with the store's lock held (or before the store is shared)."""
    db.create_function("pfs_repo_changed", 1, lambda repo: log.note((str(repo),)))
    db.create_function("pfs_volume_changed", 1, lambda name: log.note(volumes=(str(name),)))
    db.create_function(
        "pfs_part_changed",
        3,
        lambda repo, kind, name: log.note(parts=((str(repo), str(kind), str(name)),)),
    )
    db.create_function("pfs_all_changed", 0, lambda: log.note(everything=True))
    tables = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        if table in UNREAD:
            continue
        for event in EVENTS:
            body = _calls(table, event)
            db.execute(
                f'CREATE TEMP TRIGGER IF NOT EXISTS "pfs_list_{table}_{event.lower()}" '
                f'AFTER {event} ON main."{table}" FOR EACH ROW BEGIN {body} END'
            )


def _calls(table: str, event: str) -> str:
    """The trigger's body: what the row change notes."""
    rows = {"INSERT": ("NEW",), "UPDATE": ("OLD", "NEW"), "DELETE": ("OLD",)}[event]
    if table == VOLUME_NAMES:
        return "".join(f"SELECT pfs_volume_changed({row}.name);" for row in rows)
    part = PART_COLUMNS.get(table)
    if part is not None:
        kind, name = part
        return "".join(
            f"SELECT pfs_part_changed({row}.repo, '{kind}', {row}.\"{name}\");" for row in rows
        )
    column = REPO_COLUMN.get(table)
    if column is None:
        return "SELECT pfs_all_changed();"
    return "".join(f'SELECT pfs_repo_changed({row}."{column}");' for row in rows)
