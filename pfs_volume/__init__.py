"""pfs: commit-based Docker volumes on btrfs."""

__version__ = "0.1.0"


def package_version() -> str:
    """The installed package's version, from its metadata (``__version__`` when pfs runs
    from a checkout that is not installed; a unit test holds the two equal). Importing
    ``importlib.metadata`` costs about 25 ms: only ``--version`` and the daemon call this.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pfs")
    except PackageNotFoundError:
        return __version__
