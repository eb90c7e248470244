"""KeptAnswer (List's answer kept between calls), the pool's change count and the
plugin's encoding of a kept answer, with fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.volumes import VolumeInfo
from plugin.app import EncodedList
from tests.kept_answer import KeptAnswer


class Source:
    """A counting answer over a value and a token a test moves by hand."""

    def __init__(self) -> None:
        self.value = "a"
        self.token: int | None = 1
        self.worked_out = 0
        self.during: list[str] = []

    def work_out(self) -> str:
        self.worked_out += 1
        answer = self.value
        for change in self.during:  # a write that ends while the answer is worked out
            self.value, self.token = change, (self.token or 0) + 1
        self.during = []
        return answer


def test_the_answer_is_kept_while_the_token_stays() -> None:
    source = Source()
    kept = KeptAnswer(source.work_out, lambda: source.token)
    assert [kept.answer() for _ in range(5)] == ["a"] * 5
    assert source.worked_out == 1


def test_a_new_token_works_the_answer_out_again() -> None:
    source = Source()
    kept = KeptAnswer(source.work_out, lambda: source.token)
    kept.answer()
    source.value, source.token = "b", 2
    assert kept.answer() == "b"
    assert kept.answer() == "b"
    assert source.worked_out == 2


def test_a_write_during_the_work_shows_in_the_next_call() -> None:
    """The token is read before the work: one that moved during it is never kept with
    the answer it did not see."""
    source = Source()
    kept = KeptAnswer(source.work_out, lambda: source.token)
    source.during = ["b"]
    assert kept.answer() == "a"
    assert kept.answer() == "b"
    assert source.worked_out == 2


def test_without_a_token_nothing_is_kept() -> None:
    source = Source()
    source.token = None
    kept = KeptAnswer(source.work_out, lambda: source.token)
    kept.answer()
    kept.answer()
    assert source.worked_out == 2


def test_a_failure_keeps_nothing() -> None:
    source = Source()
    calls = iter([RuntimeError("store down"), None])

    def work_out() -> str:
        failure = next(calls)
        if failure is not None:
            raise failure
        return source.work_out()

    kept = KeptAnswer(work_out, lambda: source.token)
    with pytest.raises(RuntimeError):
        kept.answer()
    assert kept.answer() == "a"
    assert kept.answer() == "a"
    assert source.worked_out == 1


def test_the_pool_counts_each_move_after_it_ends_even_a_failed_one(tmp_path: Path) -> None:
    pool = BtrfsPool(tmp_path)
    (tmp_path / "a").mkdir()
    before = pool.changes
    pool.move(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").is_dir()
    assert pool.changes == before + 1
    with pytest.raises(FileNotFoundError):
        pool.move(tmp_path / "a", tmp_path / "c")
    assert pool.changes == before + 2


def test_the_plugin_encodes_a_kept_answer_once() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    kept = (VolumeInfo("r", "/pool/r", at, {}), VolumeInfo("r@abc123", "", None, {}))
    encoded = EncodedList()
    text = encoded.encode(kept)
    assert json.loads(text) == {
        "Volumes": [
            {"Name": "r", "Mountpoint": "/pool/r", "CreatedAt": "2026-12-01T00:00:00.000000Z"},
            {"Name": "r@abc123", "Mountpoint": ""},
        ]
    }
    assert encoded.encode(kept) is text
    changed = (VolumeInfo("r", "", at, {}),)
    assert json.loads(encoded.encode(changed))["Volumes"][0]["Mountpoint"] == ""
    mutable = [VolumeInfo("a", "", None, {})]
    encoded.encode(mutable)
    mutable.append(VolumeInfo("b", "", None, {}))
    assert len(json.loads(encoded.encode(mutable))["Volumes"]) == 2


def test_the_plugin_encodes_only_the_volumes_a_new_answer_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer updated in part shares the unchanged volumes' VolumeInfo: their JSON is
    reused, and the text is what json.dumps gives for the whole answer."""
    import plugin.app

    at = datetime(2026, 12, 1, tzinfo=UTC)
    first = tuple(VolumeInfo(f"v{n}", f"/p/{n}", at, {}) for n in range(100))
    encoded = EncodedList()
    encoded.encode(first)
    encodes = []
    real = plugin.app._volume
    monkeypatch.setattr(plugin.app, "_volume", lambda i, **k: encodes.append(i) or real(i, **k))
    second = (*first[:50], VolumeInfo("v50", "", at, {}), *first[51:])
    text = encoded.encode(second)
    assert encodes == [second[50]]
    assert text == json.dumps({"Volumes": [real(i, with_status=False) for i in second]})
