"""``error_from_response``: the one decoder of an error answer's body, pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pfs_volume.errors import (
    ERRORS_BY_CODE,
    MergeConflict,
    NotFound,
    PfsError,
    Unavailable,
    UnreadableAnswer,
    error_from_response,
)


@pytest.mark.parametrize("cls", list(ERRORS_BY_CODE.values()), ids=lambda c: c.code)
def test_an_api_error_comes_back_as_its_own_class(cls: type[PfsError]) -> None:
    body = {"error": {"code": cls.code, "message": "what went wrong"}}
    for form in (body, json.dumps(body), json.dumps(body).encode()):
        error = error_from_response(cls.status, form)
        assert type(error) is cls
        assert str(error) == "what went wrong"


def test_the_code_wins_over_the_status_and_an_unknown_code_is_a_pfs_error() -> None:
    assert type(error_from_response(500, {"error": {"code": "not_found", "message": "m"}})) is (
        NotFound
    )
    error = error_from_response(404, {"error": {"code": "from_the_future", "message": "m"}})
    assert type(error) is PfsError
    assert str(error) == "m"


def test_a_merge_conflict_keeps_its_conflicts() -> None:
    conflicts = [{"path": "a", "ours": "modified", "theirs": "deleted"}]
    body = {"error": {"code": "merge_conflict", "message": "m", "conflicts": conflicts}}
    error = error_from_response(409, body)
    assert isinstance(error, MergeConflict)
    assert error.conflicts == conflicts


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b"",
        None,
        b"[1]",
        {"error": "text"},
        {"error": {"code": "x"}},
        {"error": {"message": "no code"}},
        {"error": {"code": "not_found", "message": 123}},
        b'{"Err": "a Docker plugin answer, never pfs API\'s"}',
    ],
)
def test_a_body_that_reports_no_error_is_an_unreadable_answer(body: Any) -> None:
    error = error_from_response(502, body)
    assert isinstance(error, UnreadableAnswer)
    assert isinstance(error, Unavailable)
    assert str(error) == "HTTP 502"
    assert str(error_from_response(502, body, fallback="Bad Gateway")) == "Bad Gateway"
