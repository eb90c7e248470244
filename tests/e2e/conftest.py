"""Fixtures for end-to-end tests: a private Docker engine, real pfs daemons, a user.

One Docker engine serves the whole session, and every end-to-end module is in one
pytest-xdist group, so they run one after another on one worker (alongside the other
suites on the others). Several engines at once cost more than they saved: every engine
asks every socket in the host's plugin folder when it looks a volume up by name alone,
and a daemon another worker's crash test has just killed holds each such lookup ~15 s.
Every test gets a fresh pfs daemon (its own state dir and pool), but all of them serve
under ONE driver name per session: Docker keeps every volume plugin it has ever talked
to in its driver list for as long as it runs, and each later ``docker volume ls`` or
driver-less ``docker run -v NAME`` then waits about 15 s for every such driver that is
gone. With one name, the next test's daemon answers on the very socket Docker already
knows. An unfiltered ``docker volume ls`` also asks every socket in the host's plugin
folder, other workers' daemons included (a killed one costs 15 s): list by driver. Even
a ``docker volume ls`` by driver reads that folder and adds every legacy driver that
answers there to the engine's list for good, so the end-to-end modules that run legacy
daemons under engines of their own (Compose, engine changes) are in the shared engine's
group as well: beside it, their drivers joined its list, and once gone, held each name
looked up without a driver 15 s apiece (45 to 60 s a lookup in one run).

When a test fails, the tails of its daemon log and of the dockerd log are attached to the
failure report.

A module that marks its tests ``@pytest.mark.parametrize("pfs", BACKENDS, indirect=True)``
runs each of them twice: against a legacy daemon (``pfs serve``) and against pfs as a
managed plugin (``scripts/build-plugin``). The plugin is built and enabled once per
session and shared: between tests its repos are deleted, as a fresh daemon would start.
Every managed run goes to a group of its own (``MANAGED_GROUP``, with
test_managed_plugin.py), so to another worker and another session engine than the legacy
runs: the plugin is built once a run, not once on each of two workers, and the shared
engine's chain, the longest of the run, does not carry it. It also keeps the managed runs
off an engine that knows the legacy driver: between legacy tests its socket is gone, and
every name looked up without a driver waited 15 s on it (the managed run of the lookups
by prefix took 33 s). A managed plugin's socket is in /run/docker/plugins/ID/, which no
other engine reads.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.docker_engine import DockerEngine
from tests.e2e.docker_user import DockerUser
from tests.managed_plugin import LEGACY, MANAGED, ManagedPlugin, build_plugin_dir
from tests.pfs_node import PfsNode, unique_driver_name

DOCKERD_LOG_TAIL = 5_000
ENGINE_GROUP = "docker-engine"
"""The xdist group of the end-to-end modules on the session engine."""
MANAGED_GROUP = "managed-plugin"
"""Added to ``ENGINE_GROUP`` for every test run against the managed plugin: xdist names
a test's group after all its ``xdist_group`` marks, so these run as
``docker-engine_managed-plugin``, apart from the legacy runs of the same modules."""
RECONCILE_OFTEN = ["--reconcile-interval", "1", "--reconcile-grace", "10"]
"""Every end-to-end daemon reconciles its mount records with the engine every second, so
that every test with containers also checks that no held mount is ever released."""
TEARDOWN_TIMEOUT = 60.0
MANAGED_ENV = {"PFS_POOL_SIZE": "2G", "PFS_LOG_LEVEL": "debug"} | {
    "PFS_RECONCILE_INTERVAL": "1",
    "PFS_RECONCILE_GRACE": "10",
}
"""The plugin's settings: as ``RECONCILE_OFTEN`` for the legacy daemons."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every managed run in the managed group (before xdist reads the groups)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("pfs") == MANAGED:
            item.add_marker(pytest.mark.xdist_group(ENGINE_GROUP))
            item.add_marker(pytest.mark.xdist_group(MANAGED_GROUP))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of dockerd's log to a failing test's report (the daemon logs come
    through ``attach_log``, in tests/conftest.py)."""
    report = yield
    if report.failed:
        engine = getattr(item, "funcargs", {}).get("docker_engine")
        if isinstance(engine, DockerEngine):
            report.sections.append(("dockerd log (tail)", engine.log()[-DOCKERD_LOG_TAIL:]))
    return report


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A private dockerd for the session (no network, images from local files only)."""
    yield from running_engine(tmp_path_factory.mktemp("docker"))


def running_engine(root: Path) -> Iterator[DockerEngine]:
    """A private dockerd in ``root``, stopped when the generator closes."""
    engine = DockerEngine(root)
    try:
        engine.start()
    except BaseException:
        engine.stop()  # a dockerd that never answered still runs and holds its mounts
        raise
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def image(docker_engine: DockerEngine) -> str:
    """The tag of a busybox image imported from the local static binary."""
    return docker_engine.busybox_image()


@pytest.fixture(scope="session")
def driver_name() -> str:
    """The session's one pfs driver name (see the module docstring for why only one)."""
    return unique_driver_name("pfse2e")


@pytest.fixture(scope="session")
def plugin_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The managed plugin's folder (config.json, rootfs), built once a session, and the
    driver name baked into it."""
    name = unique_driver_name("pm")  # 17 bytes at most: see scripts/build-plugin
    return build_plugin_dir(tmp_path_factory.mktemp("plugin") / "build", name), name


@pytest.fixture(scope="session")
def managed_plugin(
    tmp_path_factory: pytest.TempPathFactory,
    docker_engine: DockerEngine,
    plugin_build: tuple[Path, str],
) -> Iterator[ManagedPlugin]:
    """pfs as a managed plugin on the session's engine, enabled; removed at the end."""
    yield from enabled_plugin(docker_engine, plugin_build, tmp_path_factory.mktemp("managed"))


def enabled_plugin(
    engine: DockerEngine, build: tuple[Path, str], state_dir: Path
) -> Iterator[ManagedPlugin]:
    """The plugin ``build`` made on ``engine`` and enabled, its API socket in
    ``state_dir``; removed when the generator closes."""
    folder, name = build
    plugin = ManagedPlugin(engine, name, state_dir, MANAGED_ENV)
    try:
        plugin.create(folder).enable()
        yield plugin
    finally:
        forget_docker_state(engine, plugin.listed_driver)
        plugin.remove()


@pytest.fixture
def pfs(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    docker_engine: DockerEngine,
    driver_name: str,
    attach_log: Callable[[str, Path], None],
) -> Iterator[PfsNode]:
    """A fresh pfs daemon in ``tmp_path``; containers and volumes are gone afterwards.

    A test may stop or kill the daemon; teardown starts it again first, because Docker
    waits about 15 s on every call to a driver that does not answer. Parametrized with
    ``MANAGED`` (see the module docstring), it is the session's managed plugin instead,
    emptied afterwards.
    """
    if getattr(request, "param", LEGACY) == MANAGED:
        plugin: ManagedPlugin = request.getfixturevalue("managed_plugin")
        try:
            yield plugin
        finally:
            plugin.revive()
            forget_docker_state(docker_engine, plugin.listed_driver)
            plugin.wait_until_no_mounts(TEARDOWN_TIMEOUT)
            plugin.forget_repos()
        return
    node = PfsNode(
        tmp_path / "pfs",
        driver_name=driver_name,
        env={"PFS_DOCKER_HOST": docker_engine.host},
        args=RECONCILE_OFTEN,
    )
    attach_log(f"pfs daemon log ({node.state_dir})", node.log_path)
    try:
        node.start()
    except BaseException:
        node.cleanup()
        raise
    try:
        yield node
    finally:
        if node.process is None or node.process.poll() is not None:
            revive(node)
        try:
            forget_docker_state(docker_engine, driver_name)
        finally:
            node.cleanup()


@pytest.fixture
def user(docker_engine: DockerEngine, image: str, pfs: PfsNode) -> DockerUser:
    """Someone using the ``pfs`` node through Docker and the pfs CLI."""
    return DockerUser(docker_engine, image, pfs)


def forget_docker_state(engine: DockerEngine, driver: str) -> None:
    """Remove every container (the engine is private) and every volume of ``driver``.

    Run while the daemon still answers, so that Docker's Unmount and Remove calls land.
    """
    containers = engine.docker("ps", "-aq", check=False).stdout.split()
    if containers:
        engine.docker("rm", "-f", *containers, check=False, timeout=TEARDOWN_TIMEOUT)
    listed = engine.docker(
        "volume", "ls", "-q", "--filter", f"driver={driver}", check=False, timeout=TEARDOWN_TIMEOUT
    )
    volumes = listed.stdout.split()
    if volumes:
        engine.docker("volume", "rm", "-f", *volumes, check=False, timeout=TEARDOWN_TIMEOUT)


def revive(node: PfsNode) -> None:
    """Start a stopped node again so that Docker's calls to its driver are answered."""
    node.process = None
    try:
        node.start()
    except RuntimeError as exc:
        print(f"teardown could not restart the pfs daemon: {exc}")
