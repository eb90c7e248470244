"""A click group that imports a verb's module only when that verb runs.

Every ``pfs`` process starts Python afresh: importing each verb's module (and through
them the daemon's configuration, tar, YAML, ...) before running one of them cost more
than the verb. ``pfs --help`` still lists every verb with its short help: listing
imports them all.
"""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """A group whose subcommands are named ``"module:attribute"`` and imported on demand.

    Args:
        lazy: each subcommand's name and where it is defined.
    """

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand's name, sorted (as click lists them)."""
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, its module imported on first use; None if there
        is no such subcommand."""
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(load_command(self.lazy[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)


def load_command(where: str) -> click.Command:
    """The command at ``"module:attribute"``.

    Raises:
        TypeError: the attribute is not a click command.
    """
    module_name, _, attribute = where.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{where} is not a click command")
    return command
