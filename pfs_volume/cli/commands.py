"""The commands of ``pfs``, built into argparse parsers for the verb that runs only.

Every ``pfs`` process starts Python afresh, so what it imports is most of what a verb
costs (bench/cli_startup.py): the standard library's argparse takes a few milliseconds
where click took about 20, and only the module of the verb that runs is imported. A
verb is a function whose docstring is its help; ``@arg`` hands its arguments, in reading
order, to ``ArgumentParser.add_argument`` as they are, but for one more setting: ``env``,
the environment variable that gives the default. A ``Group`` holds verbs and groups,
each as itself or as ``"module:attribute"``: imported when the command line names it,
or when ``--help`` (or a mistake) needs the whole list.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pfs_volume.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn

    Argument = tuple[tuple[str, ...], dict[str, Any]]

VERB = "pfs_verb"
"""The namespace key of the verb the command line chose (and of its parser)."""


class Verb:
    """A command: a function, and the arguments its parser gets.

    Args:
        run: called with the parsed arguments as keywords; its docstring is the help.
    """

    def __init__(self, run: Callable[..., Any]) -> None:
        self.run = run
        self.name = run.__name__
        self.hidden = False
        self.arguments: list[Argument] = []

    @property
    def doc(self) -> str:
        """The help: the function's docstring, each paragraph on one line."""
        return _paragraphs(self.run.__doc__)


class Group:
    """A command of commands (``pfs``, ``pfs repo``).

    Args:
        name: the group's word on the command line.
        doc: its help; its first sentence is what its parent's help lists.
        children: each command's word and the command (a ``Verb``, a ``Group``, or
            ``"module:attribute"`` naming one).
        default: the command run when the next word is none of the children's (``pfs
            commit REPO/BRANCH`` is ``pfs commit create REPO/BRANCH``).
        options: the group's own options (``@arg``'s form); ``setup`` gets their values.
        setup: called with the group's options before the verb runs (the root's only:
            no other group has options).
    """

    def __init__(
        self,
        name: str,
        doc: str,
        children: Mapping[str, Verb | Group | str] | None = None,
        default: str | None = None,
        options: list[Argument] | None = None,
        setup: Callable[..., None] | None = None,
    ) -> None:
        self.name = name
        self.doc = _paragraphs(doc)
        self.hidden = False
        self.children: dict[str, Verb | Group | str] = dict(children or {})
        self.default = default
        self.arguments = list(options or [])
        self.setup = setup

    def command(
        self, name: str, hidden: bool = False
    ) -> Callable[[Verb | Callable[..., Any]], Verb]:
        """Decorator: the function (or ``Verb``) becomes the child verb ``name``; a
        hidden one is not listed in the group's help."""

        def register(target: Verb | Callable[..., Any]) -> Verb:
            found = command(name, hidden)(target)
            self.children[name] = found
            return found

        return register


def command(name: str, hidden: bool = False) -> Callable[[Verb | Callable[..., Any]], Verb]:
    """Decorator: the function (or ``Verb``) becomes the verb ``name``."""

    def make(target: Verb | Callable[..., Any]) -> Verb:
        found = target if isinstance(target, Verb) else Verb(target)
        found.name, found.hidden = name, hidden
        return found

    return make


def arg(*flags: str, **settings: Any) -> Callable[[Verb | Callable[..., Any]], Verb]:
    """Decorator: the verb takes this argument; ``flags`` and ``settings`` are what
    ``ArgumentParser.add_argument`` takes, and ``env="NAME"``: the environment variable
    ``NAME``, when set and not empty, is the default (checked by ``type`` as a typed
    value would be).
    Stacked, they read top to bottom."""

    def add(target: Verb | Callable[..., Any]) -> Verb:
        found = target if isinstance(target, Verb) else Verb(target)
        found.arguments.insert(0, (flags, settings))
        return found

    return add


def run(root: Group, argv: list[str]) -> int:
    """Parse ``argv`` (the words after the program's name) and run the verb it names.

    Returns:
        0 when the verb returned (it exits itself with another status).
    Raises:
        SystemExit: (status 2) a bad command line or a ``UsageError``, with the usage of
            the command at fault and what was wrong; (status 0) after ``--help``.
    """
    # No abbreviations (argparse's default takes --lim for --limit): an option a later
    # version adds must not change what an old script's shortened word means.
    parser = _Parser(
        prog=root.name, description=root.doc, formatter_class=_HelpFormatter, allow_abbrev=False
    )
    argv = _build(parser, root, list(argv))
    namespace, unknown = parser.parse_known_args(argv)
    values = vars(namespace)
    verb, verb_parser = values.pop(VERB)
    unknown = [word for word in unknown if word != "--"]  # _arranged's, never a name
    if unknown:  # said by the verb's parser, with its usage (argparse: the root's)
        verb_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if root.setup is not None:
        own = {_dest(flags, settings) for flags, settings in root.arguments}
        root.setup(**{key: values.pop(key) for key in own if key in values})
    try:
        verb.run(**values)
    except UsageError as exc:
        verb_parser.error(str(exc))
    return 0


def parser_of(verb: Verb, prog: str) -> argparse.ArgumentParser:
    """The parser ``run`` gives ``verb`` (its environment defaults read now): for checking
    a command line that something else will run, such as a service unit's."""
    parser = argparse.ArgumentParser(
        prog=prog, description=verb.doc, formatter_class=_HelpFormatter, allow_abbrev=False
    )
    _build(parser, verb, [])
    return parser


def _build(parser: argparse.ArgumentParser, node: Verb | Group, argv: list[str]) -> list[str]:
    """Give ``parser`` the arguments of ``node`` and, for a group, the parsers of the
    children ``argv`` can reach; returns ``argv``, with a group's default command
    inserted where the command line leaves it out."""
    for flags, settings in node.arguments:
        if not flags[0].startswith("-"):  # a positional is shown in capitals: REPO, PATH
            settings = {"metavar": flags[0].upper(), **settings}
        if "env" in settings:  # read now, not at import: argparse checks it as typed
            # Set but empty counts as unset, as it did under click: ``PFS_STATE_DIR=``
            # (a unit file's blank line, ``docker run -e PFS_API=``) means the default,
            # not the folder "" (the current one) or a whole number "".
            settings = {k: v for k, v in settings.items() if k != "env"} | {
                "default": os.environ.get(settings["env"]) or settings.get("default")
            }
        parser.add_argument(*flags, **settings)
    if isinstance(node, Verb):
        parser.set_defaults(**{VERB: (node, parser)})
        return _arranged(node, parser, argv)
    if not argv:  # a group alone (``pfs``, ``pfs repo``) shows its help
        argv.append("--help")
    if node.default is not None and argv[0] not in (*node.children, "-h", "--help"):
        argv.insert(0, node.default)  # options may come first: pfs commit -m MSG R/B
    at = _next_word(node, argv)
    if 0 < at <= len(argv) and argv[at - 1] == "--":  # pfs -- repo list: the command
        del argv[at - 1]  # word follows; argparse would take "--" for the command
        at -= 1
    word = argv[at] if at < len(argv) else None
    # Only the named child is imported; for --help or an unknown word every child, so
    # that argparse lists them; with no word (``pfs --version``), none.
    if word in node.children:
        names = [word]
    elif word is None and not {"-h", "--help"} & set(argv):
        names = []
    else:
        names = sorted(node.children)
    children = parser.add_subparsers(metavar="COMMAND", required=True, title="commands")
    for name in names:
        child = _load(node, name)
        options: dict[str, Any] = {
            "description": child.doc,
            "formatter_class": _HelpFormatter,
            "allow_abbrev": False,
        }
        if not child.hidden:  # argparse lists a command given a help text only
            options["help"] = _summary(child.doc)
        sub = children.add_parser(name, **options)
        if name == word:
            argv = argv[: at + 1] + _build(sub, child, argv[at + 1 :])
        else:
            _build(sub, child, [])
    return argv


def _arranged(verb: Verb, parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The words of ``verb``'s command line as argparse reads them right: its options
    first, each with its value in the same word, then ``--`` and the positionals.

    As click did, and as git users write: an option may come between positionals
    (``pfs get R@REF -o DIR PATH``, ``pfs diff A --json B``; argparse gives a positional
    that may be left out, PATH or B, nothing once an option came between, and then
    refuses the word that follows), and an option's value is the next word whatever it
    starts with (``-m "$MSG"`` with MSG ``-wip``; argparse refuses a value that looks
    like an option). After ``--`` every word is a positional (``pfs cat R@REF -- -x``).
    A word that starts with '-' and is no option of the verb is left to argparse, which
    refuses it; it is also remembered, to be named when argparse reports something else
    first (a positional missing because it was taken for an option).
    """
    known, with_value = {"-h", "--help"}, set[str]()
    strays: list[str] = []
    for flags, settings in verb.arguments:
        if flags[0].startswith("-"):
            known.update(flags)
            if settings.get("action", "store") == "store":
                with_value.update(flags)
    options: list[str] = []
    positionals: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            positionals.extend(words)
            break
        if not word.startswith("-") or word == "-" or _is_number(word):
            positionals.append(word)
            continue
        if word.startswith("--"):
            flag = word if word in known else word.partition("=")[0]
        else:
            flag = word[:2]
        if flag not in known and " " in word:  # argparse's rule: "-a b" is a positional
            positionals.append(word)
            continue
        options.append(word)
        if word.startswith("--"):
            if word not in known:
                if flag not in known:
                    strays.append(word)
            elif word in with_value and (value := next(words, None)) is not None:
                options[-1] = f"{word}={value}"
            continue
        for at in range(1, len(word)):  # -r, -m MSG, -mMSG, -rm MSG
            short = "-" + word[at]
            if short not in known:
                strays.append(word)
                break
            if short in with_value:
                if at == len(word) - 1 and (value := next(words, None)) is not None:
                    options[-1:] = [*(f"-{c}" for c in word[1:at]), f"{short}={value}"]
                break
    if isinstance(parser, _Parser):
        parser.strays = strays
    if "--" in positionals:
        # argparse (3.11) drops a positional "--" after the separator: the verb would
        # get an empty list for its name.
        parser.error("'--' cannot be a name here; write it as ./--")
    return [*options, "--", *positionals] if positionals else options


def _is_number(word: str) -> bool:
    """Whether ``word`` is a negative number (argparse takes it for a positional)."""
    digits = word[1:].replace(".", "", 1)
    return digits.isdigit() and not word[1:].endswith(".")


def _next_word(group: Group, argv: list[str]) -> int:
    """Where the first word of ``argv`` that is no option of ``group`` (nor an option's
    value) is; ``len(argv)`` if there is none."""
    with_value = {
        flag
        for flags, settings in group.arguments
        if settings.get("action", "store") == "store"
        for flag in flags
    }
    at = 0
    while at < len(argv):
        word = argv[at]
        if word == "--":
            return at + 1
        if not word.startswith("-"):
            return at
        if word in ("-h", "--help"):  # the group's help: it lists every child
            return len(argv)
        at += 2 if word in with_value else 1
    return at


def _load(group: Group, name: str) -> Verb | Group:
    """The child ``name`` of ``group``, its module imported on first use.

    Raises:
        TypeError: a ``"module:attribute"`` that names no command.
    """
    child = group.children[name]
    if isinstance(child, str):
        module_name, _, attribute = child.partition(":")
        child = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(child, Verb | Group):
            raise TypeError(f"{group.children[name]} is not a pfs command")
        group.children[name] = child
    return child


def _dest(flags: tuple[str, ...], settings: dict[str, Any]) -> str:
    """The namespace key of an option (argparse's rule: ``dest``, else the first long
    flag without its dashes)."""
    if "dest" in settings:
        return str(settings["dest"])
    long = next((f for f in flags if f.startswith("--")), flags[0])
    return long.lstrip("-").replace("-", "_")


def _columns() -> int:
    """The terminal's width (``COLUMNS`` first, as ``shutil.get_terminal_size``), else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns or 80


def _summary(doc: str) -> str:
    """What a group's help lists for a command: the first sentence of its help."""
    first = doc.split("\n\n")[0]
    end = first.find(". ")
    return first if end < 0 else first[: end + 1]


def _paragraphs(doc: str | None) -> str:
    """A docstring's paragraphs, each on one line, a blank line between them."""
    text = (doc or "").strip()
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


class _Parser(argparse.ArgumentParser):
    """argparse's parser, naming the unknown options it saw when it reports another
    mistake first (``pfs cat R@REF -x``: PATH is missing, as ``-x`` is no option)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strays: list[str] = []

    def error(self, message: str) -> NoReturn:
        """Exit 2 with the usage and ``message``, and the unknown options if any."""
        if self.strays and not message.startswith("unrecognized arguments"):
            message += (
                f"; no such option: {' '.join(self.strays)} (an argument that starts "
                "with '-' goes after '--')"
            )
        super().error(message)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, keeping a description's paragraphs apart.

    argparse makes a formatter for every argument it adds (to check its metavar), and
    its own asks ``shutil`` for the terminal's width: importing shutil (with zlib, bz2
    and lzma) cost every verb a few milliseconds. ``os`` tells the width as well.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text  # zero-argument super() is not seen in a comprehension
        return "\n\n".join(fill(part, width, indent) for part in text.split("\n\n"))
