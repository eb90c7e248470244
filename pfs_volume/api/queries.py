"""Query parameters the API routes share."""

from __future__ import annotations

from flask import request

from pfs_volume.errors import InvalidRequest


def flag(name: str) -> bool:
    """A ``true``/``false`` query parameter (absent: false). Raises InvalidRequest."""
    text = request.args.get(name, "false")
    if text not in ("true", "false"):
        raise InvalidRequest(f"the query parameter {name} must be true or false, not {text[:40]!r}")
    return text == "true"
