"""The grammars of single spec values: durations and globs."""

from __future__ import annotations

import math
import re
from typing import Any

from pfs_volume.errors import InvalidRequest
from pfs_volume.pipelines.spec.model import MAX_TIMEOUT
from pfs_volume.pipelines.spec.problems import kind, show

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_DURATION_HINT = 'seconds as a number, or a duration such as "90s", "10m", "2h" or "1h30m"'


def parse_duration(raw: Any) -> float:
    """Seconds from a number or a duration string (``"90s"``, ``"10m"``, ``"2h"``,
    ``"1h30m"``, ``"1.5h"``; a bare string number is seconds).

    Raises:
        InvalidRequest: saying what was given and what is accepted; also for a duration
            that is not above 0 or is over ``MAX_TIMEOUT``.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidRequest(f"must be {_DURATION_HINT}, not {kind(raw)}")
    if isinstance(raw, str):
        text = raw.strip()
        found = _DURATION.fullmatch(text) if text else None
        if found is not None and any(found.groups()):
            hours, minutes, secs = (float(part) if part else 0.0 for part in found.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise InvalidRequest(f"{show(raw)} is not {_DURATION_HINT}") from None
    else:
        seconds = float(raw)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        raise InvalidRequest(
            f"{show(raw)} is out of range; give above 0 and at most {MAX_TIMEOUT} s (a week)"
        )
    return seconds


def split_glob(glob: str) -> tuple[str, ...]:
    """The segments of a glob: ``()`` for ``/``, ``("*", "*.csv")`` for ``/*/*.csv``.

    Raises:
        InvalidRequest: saying what is wrong with the glob.
    """
    if not glob.startswith("/"):
        raise InvalidRequest(
            f"the glob {show(glob)} must start with '/' (the input's root), as in / or /*"
        )
    if glob == "/":
        return ()
    segments = tuple(glob[1:].split("/"))
    for segment in segments:
        if not segment:
            raise InvalidRequest(
                f"the glob {show(glob)} has an empty segment (a '//' or a trailing '/')"
            )
        if segment in (".", ".."):
            raise InvalidRequest(
                f"the glob {show(glob)} has a {segment!r} segment; a glob selects paths "
                "inside the input, one segment per level"
            )
        if "**" in segment:
            raise InvalidRequest(
                f"the glob {show(glob)} has '**'; any-depth matching is not supported: "
                "write one segment per level, as in /*/*"
            )
        if "\0" in segment:
            raise InvalidRequest(f"the glob {show(glob)} contains a NUL character")
        if not _brackets_closed(segment):
            raise InvalidRequest(
                f"the glob {show(glob)} has a '[' without a closing ']' in {segment!r}"
            )
    return segments


def _brackets_closed(segment: str) -> bool:
    """Whether every ``[`` opens a class that ``fnmatch`` would close (else it would be
    matched literally, which is rarely what was meant)."""
    index = 0
    while index < len(segment):
        if segment[index] == "[":
            end = index + 1
            if end < len(segment) and segment[end] == "!":
                end += 1
            if end < len(segment) and segment[end] == "]":
                end += 1
            end = segment.find("]", end)
            if end < 0:
                return False
            index = end
        index += 1
    return True
