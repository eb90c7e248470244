"""Strict JSON for what clients send: the one parser behind every JSON body of the API,
every Docker plugin endpoint and every pipeline spec.

Python's ``json`` module accepts more than a service should keep: nesting deep enough to
exhaust the interpreter's stack, lone UTF-16 surrogates (``"\\ud800"``) that no UTF-8
store can hold, ``NaN``, a key given twice (the last one silently wins) and bodies of any
size. Each is refused here with an ``InvalidRequest`` that says what was wrong and what
is accepted, before anything reaches a service.
"""

from __future__ import annotations

import json
from typing import IO, Any

from pfs_volume.errors import BodyTooLarge, InvalidRequest

MAX_BODY = 1024 * 1024
"""Bytes a JSON body may have (the largest, a pipeline spec, is far smaller)."""
MAX_DEPTH = 64
"""How deeply arrays and objects may nest (a pipeline spec needs about 6)."""
READ_CHUNK = 64 * 1024


def read_body(stream: IO[bytes], length: int | None, what: str, limit: int = MAX_BODY) -> bytes:
    """A request body of at most ``limit`` bytes, read from ``stream`` without holding
    more than that in memory.

    Args:
        stream: the request's input. length: its declared Content-Length, if any.
        what: how errors name it ("the request body"). limit: the most bytes accepted.
    Raises:
        BodyTooLarge: it is longer than ``limit``.
    """
    if length is not None and length > limit:
        raise _too_long(what, length, limit)
    parts: list[bytes] = []
    size = 0
    while size <= limit and (chunk := stream.read(min(READ_CHUNK, limit + 1 - size))):
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_long(what, None, limit)
    return b"".join(parts)


def loads(text: bytes | str, what: str, limit: int = MAX_BODY) -> Any:
    """Parse JSON text strictly.

    Args:
        text: the JSON (bytes must be UTF-8; a BOM is allowed).
        what: how errors name it ("the request body", "the pipeline spec").
        limit: the most bytes accepted.
    Returns:
        What ``json.loads`` returns, with every string valid Unicode.
    Raises:
        InvalidRequest: too long, not UTF-8, not JSON, ``NaN`` or ``Infinity``, a key twice
            in one object, nested deeper than ``MAX_DEPTH``, or a lone surrogate.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _too_long(what, size, limit)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{what} is not valid JSON: it is not UTF-8 ({exc})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise InvalidRequest(f"{what} has the key {exc.key!r} twice in one object") from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    check_tree(value, what)
    return value


def check_tree(value: Any, what: str) -> None:
    """Check a parsed document (JSON or YAML): nesting at most ``MAX_DEPTH`` deep and
    every string, key or value, valid Unicode (no lone surrogate).

    Raises:
        InvalidRequest: saying where the problem is.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, what, path)
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise _too_deep(what)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in pairs:
                where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                if isinstance(key, str):
                    _check_text(key, what, path or "the top level")
                stack.append((inner, depth + 1, where))


def _check_text(text: str, what: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{what} holds a lone UTF-16 surrogate ({ascii(text[exc.start])[1:-1]}) at "
            f"{path.lstrip('.') or 'the top level'}: strings must be valid Unicode (a "
            "surrogate escape is accepted only as half of a pair)"
        ) from None


def _too_long(what: str, size: int | None, limit: int) -> BodyTooLarge:
    told = f"{size} bytes long" if size is not None else f"longer than {limit} bytes"
    return BodyTooLarge(f"{what} is {told}; at most {limit} bytes are accepted")


def _too_deep(what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} is nested too deeply; arrays and objects may nest at most {MAX_DEPTH} deep"
    )


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(items: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in items:
        if key in mapping:
            raise _DuplicateKey(key)
        mapping[key] = value
    return mapping


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
