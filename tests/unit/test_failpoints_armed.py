"""Every named failpoint in the daemon is armed by some test: a failpoint no test arms
(or one a refactor renamed, so that the tests arm a name that no longer exists) is a
silent hole in the crash tests. The crash tests themselves prove each is reached: they
assert the daemon died (exit 137) or stopped there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"""failpoint\(\s*["']([a-z_.]+)["']\s*\)""")
PASSED = re.compile(r"""_after_first\(.*["']([a-z_.]+)["']\s*\)""")
ARMED = re.compile(r"""["']([a-z_]+\.[a-z_]+)(?:=stop)?["']""")


def failpoints_in_source() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "pfs_volume").rglob("*.py"):
        text = path.read_text()
        names |= set(NAMED.findall(text)) | set(PASSED.findall(text))
    return names


def armed_in_tests() -> str:
    texts = []
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != Path(__file__).name:
            text = path.read_text()
            if "PFS_FAILPOINTS" in text:
                texts.append(text)
    return "\n".join(texts)


def test_every_failpoint_is_armed_by_a_crash_test() -> None:
    names = failpoints_in_source()
    assert len(names) >= 13, names  # the finder itself still finds them
    armed = armed_in_tests()
    missing = sorted(n for n in names if f'"{n}' not in armed and f"'{n}" not in armed)
    assert missing == [], f"failpoints no test arms: {missing}"


def test_every_failpoint_a_test_arms_exists() -> None:
    names = failpoints_in_source()
    armed = armed_in_tests()
    prefixes = {n.split(".")[0] for n in names}
    stale = sorted(
        {m for m in ARMED.findall(armed) if m.split(".")[0] in prefixes and m not in names}
    )
    assert stale == [], f"tests arm failpoints the daemon no longer has: {stale}"
