"""What every client verb shares: the API client of the root ``--api``, ``--json``, and
reading a REPO/BRANCH argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pfs_volume.cli.client import ApiClient
from pfs_volume.names import parse_repo_branch

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """Add ``--json``: print the API's JSON instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def api_client() -> ApiClient:
    """A client of the daemon the root ``--api`` option names."""
    return ApiClient(click.get_current_context().find_root().params["api"])


def repo_and_branch(target: str) -> tuple[str, str]:
    """The repo and branch of a REPO/BRANCH argument.

    Raises:
        click.UsageError: ``target`` names no branch.
        InvalidName: ``target`` does not follow the grammar.
    """
    repo_name, name = parse_repo_branch(target)
    if name is None:
        raise click.UsageError(f"{target!r} names no branch; give REPO/BRANCH")
    return repo_name, name
