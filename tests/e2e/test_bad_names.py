"""Malformed or unresolvable volume names through Docker: a clear error, no change."""

from __future__ import annotations

import pytest

from tests.e2e.docker_user import MOUNT_POINT, DockerUser
from tests.managed_plugin import MANAGED

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docker-engine")]

NAME_LIMIT = 300
GRAMMAR = "expected [PREFIX/]REPO[/BRANCH][@REF]"

MALFORMED = [
    ("dotdot", "{driver}/../x", "the repo name '..' must start with a letter or digit"),
    ("empty-ref", "{driver}/a@", "nothing follows '@'"),
    ("300-chars", "{long}", "is 300 characters long; at most 255 are allowed"),
    ("bad-steps", "{driver}/photos@master~x", "'~' must be followed by a number"),
    ("unicode", "{driver}/phötos", "contains 'ö', which is not one of A-Z a-z 0-9 _ . -"),
    ("empty-repo", "{driver}/", "the repo name is empty"),
    ("empty-repo-with-ref", "{driver}/@master", "the repo name is empty"),
    ("empty-branch", "{driver}/photos/", "the branch name is empty"),
    ("too-many-slashes", "{driver}/a/b/c", "has too many '/'"),
]
"""(id, name template, what the error says); each error also shows the grammar."""
UNRESOLVABLE = [
    ("unknown-ref", "{driver}/photos@nosuchcommit", "repo 'photos' has no branch or commit"),
    ("too-far-back", "{driver}/photos@master~5", "has no parent"),
]
"""Well-formed names that name nothing: the error says so (no grammar needed)."""
BAD_NAMES = [
    *(pytest.param(template, text, True, id=ident) for ident, template, text in MALFORMED),
    *(pytest.param(template, text, False, id=ident) for ident, template, text in UNRESOLVABLE),
]


ON_THE_MANAGED_PLUGIN = ("dotdot", "unknown-ref")
"""The names tried against the managed plugin too: its errors travel the same way."""


@pytest.mark.parametrize(("template", "expected", "malformed"), BAD_NAMES)
def test_a_bad_name_is_refused_with_a_clear_error_and_changes_nothing(
    user: DockerUser, template: str, expected: str, malformed: bool
) -> None:
    check_refused(user, template, expected, malformed)


@pytest.mark.parametrize("pfs", [MANAGED], indirect=True)
@pytest.mark.parametrize(
    ("template", "expected", "malformed"),
    [case for case in BAD_NAMES if case.id in ON_THE_MANAGED_PLUGIN],
)
def test_the_managed_plugin_refuses_a_bad_name_with_a_clear_error(
    user: DockerUser, template: str, expected: str, malformed: bool
) -> None:
    check_refused(user, template, expected, malformed)


def check_refused(user: DockerUser, template: str, expected: str, malformed: bool) -> None:
    """Creating and mounting the name fail with ``expected``, showing the grammar when
    the name is malformed; nothing changes."""
    user.run("photos", "echo 1 > /data/a")
    repos, commits = user.repos(), user.log("photos")
    volumes = sorted(user.docker_volume_names())
    long_name = f"{user.driver}/" + "a" * (NAME_LIMIT - len(user.driver) - 1)
    name = template.format(driver=user.driver, long=long_name)

    created = user.engine.docker("volume", "create", "--driver", user.driver, name, check=False)
    mount = ["--volume-driver", user.driver, "-v", f"{name}:{MOUNT_POINT}"]
    ran = user.engine.run(*mount, user.image, "sh", "-c", "echo x > /data/x", check=False)

    assert created.returncode != 0
    assert ran.returncode == 125
    for shown in (created.stderr, ran.stderr):
        assert expected in shown
        assert (GRAMMAR in shown) == malformed
    assert user.repos() == repos
    assert user.log("photos") == commits
    assert sorted(user.docker_volume_names()) == volumes
