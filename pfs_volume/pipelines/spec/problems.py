"""How validation reports problems: each as ``PATH: what is wrong``, the JSON path of
the offending value first, all of them in one ``InvalidRequest``."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from pfs_volume.errors import InvalidRequest
from pfs_volume.pipelines.spec.model import MAX_PROBLEMS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Problems:
    """The problems found so far, each as ``PATH: what is wrong``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record that the value at ``path`` is wrong (``""`` is the spec itself)."""
        self.lines.append(f"{path}: {message}" if path else message)

    def raise_if_any(self) -> None:
        """Raise one InvalidRequest listing the problems (the first ``MAX_PROBLEMS``)."""
        if not self.lines:
            return
        count = len(self.lines)
        shown = self.lines[:MAX_PROBLEMS]
        if count > MAX_PROBLEMS:
            shown.append(f"... and {count - MAX_PROBLEMS} more problems")
        header = f"the pipeline spec has {count} problem{'s' if count > 1 else ''}:"
        raise InvalidRequest("\n".join([header, *shown]))


def mapping_fields(
    problems: Problems,
    path: str,
    value: Any,
    accepted: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The known fields of a mapping; unknown and missing ones become problems."""
    if value is None and not path:
        problems.add(path, f"the pipeline spec is empty; give a mapping of {listing(accepted)}")
        return None
    if not isinstance(value, dict):
        what = "" if path else "the pipeline spec "
        problems.add(path, f"{what}must be a mapping of {listing(accepted)}, not {kind(value)}")
        return None
    known: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key in accepted:
            known[key] = item
            continue
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(field_path(path, key), f"unknown field{hint}; accepted: {listing(accepted)}")
    for key in required:
        if key not in known:
            problems.add(field_path(path, key), "required field is missing")
    return known


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (a boolean is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def kind(value: Any) -> str:
    """What ``value`` is, in a message's words (``"a list"``, ``"null"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def field_path(path: str, key: Any) -> str:
    """The JSON path of ``key`` under ``path``: ``a.b``, or ``a["b c"]`` when needed."""
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    text = json.dumps(key if isinstance(key, str) else str(key), ensure_ascii=False)
    return f"{path}[{text}]"


def listing(names: tuple[str, ...]) -> str:
    """Names as a message lists them."""
    return ", ".join(names)


def show(value: Any, keep: int = 60) -> str:
    """``value`` as a message quotes it, cut to ``keep`` characters."""
    text = repr(value)
    return text if len(text) <= keep else text[:keep] + "..."
