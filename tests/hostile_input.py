"""What the hostile-input tests share: hypothesis strategies for request bodies no
client should send, the routes of the apps themselves (so a new route cannot be left
out), and a dump of everything a request could change (metadata and pool).

Strategies: ``hostile_bodies()`` mixes deep nesting, lone surrogates as JSON escapes,
strings around the body limit, wrong types, NaN and Infinity, duplicate keys, bytes that
are not UTF-8, empty bodies and other encodings, over the field names the apps accept.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pfs_volume.api.openapi import openapi_document
from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.request_limits import DEFAULT_BODY

FUZZ_PROFILE = "pfs-fuzz"
settings.register_profile(
    FUZZ_PROFILE,
    # PFS_FUZZ_EXAMPLES raises it for a long run; the default keeps CI's run short.
    max_examples=int(os.environ.get("PFS_FUZZ_EXAMPLES", "12")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

PLUGIN_FIELDS = ("Name", "ID", "Opts")
LONE_SURROGATES = ("\\ud800", "\\udfff", "a\\udbffb", "\\udc00\\ud800")
ODD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 400, "-0", "1.5e-400")


def body_fields() -> list[str]:
    """Every field name an app's request body accepts: the API's (from its OpenAPI
    document) and the plugin protocol's."""
    found: set[str] = set(PLUGIN_FIELDS)
    stack: list[Any] = [openapi_document()]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("properties"), dict):
                found |= set(item["properties"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(found)


FIELDS = st.sampled_from(body_fields())
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FIELDS, inner, max_size=4),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([63, 64, 65, 1000, 200_000]))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def _surrogate(draw: st.DrawFn) -> bytes:
    field = draw(FIELDS)
    escape = draw(st.sampled_from(LONE_SURROGATES))
    where = draw(st.sampled_from(["value", "key", "nested"]))
    if where == "key":
        return f'{{"{escape}": 1}}'.encode()
    if where == "nested":
        return f'{{"{field}": {{"x": ["{escape}"]}}}}'.encode()
    return f'{{"{field}": "{escape}"}}'.encode()


@st.composite
def _huge_string(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([DEFAULT_BODY - 64, DEFAULT_BODY + 1, 3 * DEFAULT_BODY]))
    return _dumps({draw(FIELDS): "x" * size})


@st.composite
def _wrong_types(draw: st.DrawFn) -> bytes:
    return _dumps(draw(st.dictionaries(FIELDS, JSON_VALUES, max_size=4)))


@st.composite
def _odd_number(draw: st.DrawFn) -> bytes:
    return f'{{"{draw(FIELDS)}": {draw(st.sampled_from(ODD_NUMBERS))}}}'.encode()


@st.composite
def _duplicate_key(draw: st.DrawFn) -> bytes:
    field = draw(FIELDS)
    first, second = draw(JSON_VALUES), draw(JSON_VALUES)
    return f'{{"{field}": {json.dumps(first)}, "{field}": {json.dumps(second)}}}'.encode()


@st.composite
def _other_encoding(draw: st.DrawFn) -> bytes:
    text = _dumps(draw(st.dictionaries(FIELDS, st.text(max_size=10), max_size=2))).decode()
    codec = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig"]))
    return text.encode(codec, "replace")


def hostile_bodies() -> st.SearchStrategy[bytes]:
    """Request bodies of every hostile kind (see the module's docstring)."""
    return st.one_of(
        st.sampled_from([b"", b" ", b"\r\n", b"null", b"[]", b"0", b'"x"', b"{", b"}{"]),
        _deep(),
        _surrogate(),
        _huge_string(),
        _wrong_types(),
        _odd_number(),
        _duplicate_key(),
        _other_encoding(),
        st.binary(max_size=64),
        JSON_VALUES.map(_dumps),
    )


def app_routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, rule) an app serves, from its own url_map; deleting routes last
    (they may take away what the others act on)."""
    found = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    return sorted(found, key=lambda route: (route[0] == "DELETE", route[1], route[0]))


META_FILES = ("meta.db", "meta.db-wal", "meta.db-shm", "meta.db-journal")


def store_state(repos: RepoService, store: SqliteStore) -> Any:
    """Everything a request could change: every record of the metadata store, and every
    entry of the pool with its kind, mode, owner, size, link target and a digest of its
    bytes (not the metadata store's own files, whose bytes change with any read's
    checkpoint, nor times)."""
    records = (
        store.list_repos(),
        [store.list_branches(r.name) for r in store.list_repos()],
        [store.list_commits(r.name) for r in store.list_repos()],
        store.list_mounts(),
        store.list_volumes(),
        store.list_documents("pipeline"),
        store.list_documents("job"),
    )
    return records, _pool_listing(repos.pool.root)


def _pool_listing(root: Path) -> list[tuple[str, int, int, int, int, str]]:
    listing = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in sorted(dirs + files):
            path = here / name
            if path.parent == root and name in META_FILES:
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = ""
            size = 0 if stat.S_ISDIR(info.st_mode) else info.st_size
            listing.append(
                (str(path.relative_to(root)), info.st_mode, info.st_uid, info.st_gid, size, content)
            )
    return sorted(listing)
