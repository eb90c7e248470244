"""The volume-name grammar (DESIGN.md, "The volume name"); pure functions only.

    name   = [ PREFIX "/" ] repo [ "/" branch ] [ "@" ref ]
    repo   = branch = 1..63 of [A-Za-z0-9_.-], first a letter or digit
    ref    = a branch name | a commit id or a unique prefix of one (>= 6 hex)
             | REF "~" N   (N first parents back)  | REF "^" [N]   (the N-th parent)

Parsing says only what a name *says*; which branch or commit it *means* depends on the
repo's state and is decided by the repo service.
"""

from __future__ import annotations

import re

from pfs_volume.errors import InvalidName

DEFAULT_BRANCH = "master"
MAX_COMPONENT = 63
MAX_NAME = 255
MIN_COMMIT_PREFIX = 6
COMMIT_ID_LENGTH = 32

GRAMMAR = (
    "expected [PREFIX/]REPO[/BRANCH][@REF], where REPO and BRANCH are 1-63 characters "
    "of A-Z a-z 0-9 _ . - starting with a letter or digit, and REF is a branch, a commit "
    "id or a unique prefix of one (at least 6 hex digits), optionally followed by ~N "
    "(N generations back along first parents) or ^N (a merge commit's N-th parent), e.g. "
    "pfs/photos, pfs/photos/dev, pfs/photos@3f2a9c, pfs/photos@master~2, pfs/photos@master^2"
)

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]")
_HEX = re.compile(r"[0-9a-f]+")
_STEPS = re.compile(r"[0-9]{1,9}")
_HOP = re.compile(r"([~^])([^~^]*)")
MAX_PARENT = 99
"""The highest parent number ``^N`` takes (a merge records two today)."""
_ANONYMOUS = re.compile(r"[0-9a-f]{64}")
"""Docker names an anonymous volume (``-v /data``) with 64 random hex digits."""


class _Value:
    """An immutable record, equal to another of its class with equal fields: what a
    frozen dataclass is, without importing ``dataclasses`` and ``typing``. The CLI
    parses names in a process of its own, and those imports (``inspect``, ``ast``...)
    cost it more than its API call (bench/cli_startup.py)."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *values: object) -> None:
        for field, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, field, value)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, field) for field in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Value) or type(other) is not type(self):
            return False
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")


class Hop(_Value):
    """One step of a ref's walk back: go to parent number ``parent`` (1 is the first,
    the branch's previous head; 2 a merge's merged-in head), ``times`` times."""

    __slots__ = ("parent", "times")
    parent: int
    times: int

    def __init__(self, parent: int, times: int) -> None:
        super().__init__(parent, times)

    def __str__(self) -> str:
        return f"~{self.times}" if self.parent == 1 else f"^{self.parent}"


class Ref(_Value):
    """A reference inside a repo: ``base`` (branch name or commit id/prefix), then a walk
    back through parents (``~N``: N first parents; ``^N``: the N-th parent; ``^``: ``^1``).

    ``walk`` is None when nothing follows the base: only such a ref can name a branch's
    working copy; ``master~0`` names master's head commit.
    """

    __slots__ = ("base", "walk")
    base: str
    walk: tuple[Hop, ...] | None

    def __init__(self, base: str, walk: tuple[Hop, ...] | None = None) -> None:
        super().__init__(base, walk)

    def __str__(self) -> str:
        return self.base + "".join(str(hop) for hop in self.walk or ())

    @property
    def plain(self) -> bool:
        """True when the ref is a bare name (no ``~N`` or ``^N``)."""
        return self.walk is None


def back(base: str, generations: int) -> Ref:
    """The ref ``BASE~GENERATIONS``."""
    return Ref(base, (Hop(1, generations),))


class VolumeName(_Value):
    """What a volume name says: a repo, maybe a branch, maybe a ref."""

    __slots__ = ("repo", "branch", "ref")  # noqa: RUF023 - the constructor's order
    repo: str
    branch: str | None
    ref: Ref | None

    def __init__(self, repo: str, branch: str | None = None, ref: Ref | None = None) -> None:
        super().__init__(repo, branch, ref)

    def __str__(self) -> str:
        text = self.repo
        if self.branch is not None:
            text += f"/{self.branch}"
        if self.ref is not None:
            text += f"@{self.ref}"
        return text


def is_commit_prefix(text: str) -> bool:
    """True when ``text`` is 6 to 32 lowercase hex digits."""
    return MIN_COMMIT_PREFIX <= len(text) <= COMMIT_ID_LENGTH and bool(_HEX.fullmatch(text))


def check_component(text: str, what: str) -> str:
    """Validate a repo or branch name.

    Args:
        text: the candidate name.
        what: ``"repo"`` or ``"branch"``, used in the error message.
    Returns:
        ``text`` unchanged.
    Raises:
        InvalidName: saying what is wrong, with the grammar.
    """
    if not text:
        raise InvalidName(f"the {what} name is empty; {GRAMMAR}")
    if len(text) > MAX_COMPONENT:
        raise InvalidName(
            f"the {what} name {_shorten(text)!r} is {len(text)} characters long; "
            f"at most {MAX_COMPONENT} are allowed; {GRAMMAR}"
        )
    bad = next((ch for ch in text if not _ALLOWED.fullmatch(ch)), None)
    if bad is not None:
        raise InvalidName(
            f"the {what} name {text!r} contains {bad!r}, which is not one of "
            f"A-Z a-z 0-9 _ . -; {GRAMMAR}"
        )
    if not _COMPONENT.fullmatch(text):
        raise InvalidName(f"the {what} name {text!r} must start with a letter or digit; {GRAMMAR}")
    return text


def parse_ref(text: str) -> Ref:
    """Parse a ref: ``BASE`` then any of ``~N`` (N first parents back; repeated ``~``
    add up), ``^N`` (the N-th parent; ``^0`` the commit itself) and ``^`` (``^1``).

    Raises:
        InvalidName: for an empty ref, a bad base or a ``~``/``^`` with a bad number.
    """
    if not text:
        raise InvalidName(
            "nothing follows '@': a ref is required after it (a branch, a commit id or "
            f"a prefix of at least {MIN_COMMIT_PREFIX} hex digits); {GRAMMAR}"
        )
    cut = min((i for i, ch in enumerate(text) if ch in "~^"), default=len(text))
    base, rest = text[:cut], text[cut:]
    check_component(base, "ref")
    if not rest:
        return Ref(base)
    walk: list[Hop] = []
    for match in _HOP.finditer(rest):
        hop = _hop(text, base, match.group(1), match.group(2))
        if walk and hop.parent == 1 and walk[-1].parent == 1:
            hop = Hop(1, walk.pop().times + hop.times)
        walk.append(hop)
    return Ref(base, tuple(walk))


def _hop(text: str, base: str, sign: str, number: str) -> Hop:
    if sign == "^" and not number:
        return Hop(1, 1)
    if not _STEPS.fullmatch(number):
        raise InvalidName(
            f"the ref {_shorten(text)!r} has {sign!r} followed by {_shorten(number)!r}; "
            f"'~' must be followed by a number of generations (1 to 9 digits), as in "
            f"{base}~1, and '^' by a parent number or nothing, as in {base}^2; {GRAMMAR}"
        )
    if sign == "~":
        return Hop(1, int(number))
    if int(number) > MAX_PARENT:
        raise InvalidName(
            f"the ref {_shorten(text)!r} asks for parent {int(number)}; a commit has at "
            f"most {MAX_PARENT} parents (^1 is the first, ^2 a merge's second); {GRAMMAR}"
        )
    return Hop(1, 0) if int(number) == 0 else Hop(int(number), 1)


def parse_volume_name(name: str, prefix: str | None = None) -> VolumeName:
    """Parse a Docker volume name.

    Args:
        name: the name Docker passed, e.g. ``pfs/photos/dev@3f2a9c~1``.
        prefix: the driver's name prefix without the slash (``"pfs"``); a name that
            starts with ``PREFIX/`` has it stripped first.
    Returns:
        The parsed ``VolumeName``.
    Raises:
        InvalidName: saying what is wrong, with the grammar.
    """
    if not isinstance(name, str):
        raise InvalidName(f"the volume name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidName(f"the volume name is empty; {GRAMMAR}")
    if len(name) > MAX_NAME:
        raise InvalidName(
            f"the volume name {_shorten(name)!r} is {len(name)} characters long; at most "
            f"{MAX_NAME} are allowed; {GRAMMAR}"
        )
    if _ANONYMOUS.fullmatch(name):
        raise InvalidName(
            f"{name[:12]}... is the name Docker gives an anonymous volume (-v /data); pfs "
            f"volumes need a name that says which repo they are, e.g. "
            f"-v {prefix or 'pfs'}/photos:/data; {GRAMMAR}"
        )
    rest = name
    if prefix and rest.startswith(prefix + "/"):
        rest = rest[len(prefix) + 1 :]
    path, at, ref_text = rest.partition("@")
    if "@" in ref_text:
        raise InvalidName(f"the volume name {name!r} has more than one '@'; {GRAMMAR}")
    parts = path.split("/")
    if len(parts) > 2:
        raise InvalidName(
            f"the volume name {name!r} has too many '/': at most REPO/BRANCH may follow "
            f"the prefix; {GRAMMAR}"
        )
    repo = check_component(parts[0], "repo")
    branch = check_component(parts[1], "branch") if len(parts) == 2 else None
    ref = parse_ref(ref_text) if at else None
    return VolumeName(repo=repo, branch=branch, ref=ref)


def parse_repo_branch(text: str) -> tuple[str, str | None]:
    """Parse ``REPO`` or ``REPO/BRANCH`` (as the CLI takes them).

    Raises:
        InvalidName: for anything else.
    """
    parts = text.split("/")
    if len(parts) > 2 or "@" in text:
        raise InvalidName(f"{text!r} is not REPO or REPO/BRANCH; {GRAMMAR}")
    repo = check_component(parts[0], "repo")
    return repo, (check_component(parts[1], "branch") if len(parts) == 2 else None)


def parse_repo_ref(text: str) -> tuple[str, Ref]:
    """Parse ``REPO@REF`` (as ``pfs commit inspect`` takes it).

    Raises:
        InvalidName: for anything else.
    """
    repo, at, ref_text = text.partition("@")
    if not at:
        raise InvalidName(f"{text!r} is not REPO@REF; {GRAMMAR}")
    return check_component(repo, "repo"), parse_ref(ref_text)


def _shorten(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else text[:keep] + "..."
