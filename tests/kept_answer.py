"""An answer kept between calls for as long as a change token says nothing changed: List
as it was kept before it was brought up to date by repo (``volumes/kept_listing.py``),
now a test double of a token's reader (``tests/contract/test_etcd_changes.py``).

The token is read BEFORE the answer is worked out and kept with it: a change that ends
after the read moves the token, so the next call works the answer out again; a change
that ended before it is in the answer. An answer is never kept when there is no token.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeptAnswer(Generic[T]):
    """``answer()`` is ``work_out()``'s result, kept while ``token()`` stays the same.

    Args:
        work_out: works the answer out from scratch.
        token: says what the answer depends on as it is now (None: unknown, so the
            answer is worked out every time); compared for equality only.
    """

    def __init__(self, work_out: Callable[[], T], token: Callable[[], Hashable | None]) -> None:
        self._work_out = work_out
        self._token = token
        self._kept: tuple[Hashable, T] | None = None

    def answer(self) -> T:
        """The answer as of now. Raises what ``token`` and ``work_out`` raise (nothing
        is kept then).

        No lock: calls at once each work the answer out (one waiting on an unreachable
        store must not make the others wait in a queue behind it). Whichever is kept
        last is right for its own token: its answer was worked out after that token was
        read, and a token never comes back once it moved (each backend's only grows).
        """
        now = self._token()
        kept = self._kept
        if now is not None and kept is not None and kept[0] == now:
            return kept[1]
        answer = self._work_out()
        self._kept = (now, answer) if now is not None else None
        return answer
