"""Daemon settings: sizes and driver names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfs_volume.config import Settings, parse_size
from pfs_volume.errors import InvalidName, InvalidRequest


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("20G", 20 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("4096", 4096),
        ("2t", 2 * 1024**4),
        ("10k", 10240),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1G", "12X", "ten"])
def test_bad_sizes_say_what_is_accepted(text: str) -> None:
    with pytest.raises(InvalidRequest, match="K, M, G or T"):
        parse_size(text)


@pytest.mark.parametrize("text", ["8388608T", "999999999T", "9" * 40])
def test_sizes_past_btrfs_limit_are_refused_not_an_overflow_later(text: str) -> None:
    """``PFS_POOL_SIZE=999999999T`` failed the start with a bare OverflowError."""
    with pytest.raises(InvalidRequest, match="8 EiB"):
        parse_size(text)


def test_plugin_socket_follows_the_driver_name() -> None:
    assert Settings(driver_name="pfsx").plugin_socket == Path("/run/docker/plugins/pfsx.sock")


@pytest.mark.parametrize("name", ["", "Pfs", "p/fs", "../pfs"])
def test_bad_driver_names_are_refused(name: str) -> None:
    with pytest.raises((InvalidName, InvalidRequest)):
        Settings(driver_name=name)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    from pfs_volume.config import parse_duration

    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "d", "1.5d", "-1d", "3y", "9999999999d"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    from pfs_volume.config import parse_duration

    with pytest.raises(InvalidRequest, match="s, m, h, d or w"):
        parse_duration(text)


@pytest.mark.parametrize("count", [0, -1, 65])
def test_max_jobs_out_of_range_is_refused_with_the_range(count: int) -> None:
    with pytest.raises(InvalidRequest, match=f"--max-jobs must be from 1 to 64, not {count}"):
        Settings(max_jobs=count)
