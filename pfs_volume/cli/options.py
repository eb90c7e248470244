"""What every client verb shares: the API client of the root ``--api``, ``--json``,
argument types with clear errors, and reading a REPO/BRANCH argument."""

from __future__ import annotations

from pfs_volume.cli.client import ApiClient
from pfs_volume.cli.commands import arg
from pfs_volume.errors import UsageError
from pfs_volume.names import parse_repo_branch

JSON = arg("--json", dest="as_json", action="store_true", help="Print JSON.")
"""``--json``: print the API's JSON instead of a table."""

_api: list[str] = []


def use_api(api: str) -> None:
    """Remember the root ``--api`` address, for ``api_client``."""
    _api[:] = [api]


def api_client() -> ApiClient:
    """A client of the daemon the root ``--api`` option names.

    Raises:
        RuntimeError: called before ``use_api`` (not under ``pfs``).
    """
    if not _api:
        raise RuntimeError("no API address: use_api was not called")
    return ApiClient(_api[0])


def repo_and_branch(target: str) -> tuple[str, str]:
    """The repo and branch of a REPO/BRANCH argument.

    Raises:
        UsageError: ``target`` names no branch.
        InvalidName: ``target`` does not follow the grammar.
    """
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise UsageError(f"{target!r} names no branch; give REPO/BRANCH")
    return repo_name, name
