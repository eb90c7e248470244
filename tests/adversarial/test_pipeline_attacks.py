"""Attacks on pipelines through what a user controls: the input repos' file names and
the spec (how many datums a cross makes), and a container's output (its log).

Each test is bounded in time and memory: the behaviour before the fix ran the daemon
out of memory, so the hostile step runs in a child process with a memory limit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from pfs_volume.errors import InvalidRequest, StorageError, TooManyDatums
from pfs_volume.pipelines import joblogs
from pfs_volume.pipelines.datum_folder import datum_environment
from pfs_volume.pipelines.datums import MAX_DATUMS, Datum, datums
from pfs_volume.pipelines.jobs import JobRecord
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.pipelines.spec import InputSpec, OutputSpec, PipelineSpec, Transform
from pfs_volume.repos import RepoService
from pfs_volume.transport import UnixSocketServer
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app
from tests.fake_docker import Api, Container
from tests.integration.test_pipeline_outputs import (
    MIB,
    SPEC,
    Containers,
    Engine,
    put,
    run,
)

CHILD_MEMORY = 1024**3
"""Bytes of address space the child doing the hostile step may use."""
CHILD_TIME = 60.0


def _spec(inputs: int) -> PipelineSpec:
    return PipelineSpec(
        name="p",
        inputs=tuple(InputSpec(name=f"in{i}", repo=f"r{i}", glob="/*") for i in range(inputs)),
        combine="cross",
        transform=Transform(image="busybox", cmd=("true",)),
        output=OutputSpec(repo="out", branch="master"),
    )


def test_a_cross_of_16_inputs_of_100_files_fails_clearly_and_at_once() -> None:
    """100**16 datums: the runner materialized every combination (itertools.product in a
    list) before looking at the stop event or the job timeout, so the job thread ate the
    daemon's memory until the kernel killed the root daemon. It must fail the job with a
    clear error, in bounded time and memory."""
    code = textwrap.dedent(
        """
        import resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))
        from tests.adversarial.test_pipeline_attacks import _spec
        from pfs_volume.errors import TooManyDatums
        from pfs_volume.pipelines.datums import datums
        spec = _spec(16)
        entries = {i.name: [f"f{n:03}" for n in range(100)] for i in spec.inputs}
        began = time.monotonic()
        try:
            datums(spec, entries)
        except TooManyDatums as exc:
            print("refused", round(time.monotonic() - began, 3), exc)
            sys.exit(0)
        print("made them all")
        sys.exit(3)
        """
    ).replace("MEMORY_BOUND", str(CHILD_MEMORY))
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=CHILD_TIME, text=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"planning the datums ran past {CHILD_TIME:g} s")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "refused" in done.stdout and "datums" in done.stdout, done.stdout


def test_the_datum_limit_counts_before_making_them() -> None:
    spec = _spec(2)
    side = int(MAX_DATUMS**0.5) + 1
    entries = {i.name: [f"f{n}" for n in range(side)] for i in spec.inputs}
    began = time.monotonic()
    with pytest.raises(TooManyDatums, match=str(side * side)):
        datums(spec, entries)
    assert time.monotonic() - began < 5
    small = {i.name: [f"f{n}" for n in range(3)] for i in spec.inputs}
    assert len(datums(spec, small)) == 9


LOG_BOUND = 2 * 1024**2
"""Bytes of one datum's output ``pfs job logs`` may answer with (its tail, and a note)."""
LINE_BOUND = 128 * 1024
"""Characters of one followed line (its datum prefix included)."""
CHATTY = 64 * 1024**2
"""Bytes the hostile container writes to its output: no newline in them."""


def test_a_container_writing_one_endless_line_is_followed_in_bounded_pieces(
    tmp_path: Path,
) -> None:
    """A container printing without a newline (a progress bar on ``\\r``, or an attack):
    a follower kept all of it as one pending line, joined to each new read (quadratic
    time, every byte kept), and read a whole file's growth at once."""
    folder = tmp_path / "jobs" / "j"
    folder.mkdir(parents=True)
    log_file = folder / ("d" * 64 + ".log")
    with open(log_file, "wb") as out:
        for _ in range(CHATTY // MIB):
            out.write(b"\r" * MIB)

    def ended() -> JobRecord:  # its container is gone: everything it wrote is there
        return JobRecord(id="j", pipeline="p", inputs={}, fingerprint="", state="success")

    seen = 0
    longest = 0
    began = time.monotonic()
    for line in joblogs.follow(ended, folder, limit=30.0, poll=0.01):
        longest = max(longest, len(line))
        seen += len(line.split(" | ", 1)[1]) - 1
        assert longest <= LINE_BOUND, f"a followed line of {longest} characters"
        assert time.monotonic() - began < 30
    assert seen == CHATTY, "every byte is followed, in pieces"


def test_pfs_job_logs_answers_a_chatty_datums_tail_only(repos: RepoService) -> None:
    """``pfs job logs JOB`` read each datum's whole log into the daemon's memory and
    answered it as one JSON string: a container printing 64 MiB (or 64 GiB) made the
    root daemon hold all of it, several times over."""
    engine = Engine(repos)
    engine.api.logs = lambda *_a, **_o: (b"x" * MIB for _ in range(CHATTY // MIB))  # type: ignore[method-assign]
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        pipelines.create(SPEC)
        ended = run(pipelines)
        assert ended["state"] == "success", ended
        folder = pipelines.runner.logs_dir("up", ended["id"])
        (written,) = list(folder.glob("*.log"))
        assert written.stat().st_size == CHATTY, "the log file keeps everything"
        answered = pipelines.logs(ended["id"])
        (text,) = answered.values()
        assert len(text) <= LOG_BOUND, f"{len(text)} characters answered"
        assert text.endswith("x" * 1000), "the tail is shown"
        assert "left out" in text
    finally:
        pipelines.stop()


class LinkingContainers(Containers):
    """Datum ``a`` writes a file ``y``; datum ``b`` writes ``y`` too, as a link to a host
    folder (``/etc``): as a container can, with any target it likes."""

    def create(self, _image: str, command: list[str], **options: Any) -> Container:
        out = Path({m["Target"]: m["Source"] for m in options["mounts"]}["/pfs/out"])
        path = Path(options["environment"]["PFS_DATUM_TEXT"]).name
        if path == "a":
            (out / "y").write_bytes(b"precious output of datum a")
        else:
            os.symlink("/etc", out / "y")
        made = Container(0)
        self.made[made.id] = made
        return made


def test_a_link_to_a_host_folder_cannot_silently_replace_another_datums_file(
    repos: RepoService,
) -> None:
    """The combine's clash check walked the outputs following links to the host: a link
    to a host folder counted as a folder, not as the path it is, so two datums writing
    ``y`` were not seen, ``cp -a`` replaced datum a's file with datum b's link, and the
    job committed with a's output lost. A path written by two datums must fail the job
    (and no host path be looked up through a container's link)."""
    engine = Engine(repos)
    engine.containers = LinkingContainers(repos)
    engine.api = Api(engine.containers)
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        put(repos, "b", b"beta")
        pipelines.create(SPEC)
        ended = run(pipelines)
        job = pipelines.jobs.list("up")[-1]
        assert ended["state"] == "failure", (ended, repos.get_branch("up", "master"))
        assert "y" in (job.error or "") and "more than one datum" in (job.error or "")
        assert repos.get_branch("up", "master").head is None, "nothing was committed"
    finally:
        pipelines.stop()


class VanishingContainer(Container):
    """A container removed outside pfs while it runs (``docker rm -f``), or whose engine
    went away: every wait fails at once."""

    def __init__(self, error: Exception) -> None:
        super().__init__(0)
        self.error = error
        self.waits = 0

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        self.waits += 1
        raise self.error


class VanishingContainers(Containers):
    def __init__(self, repos: RepoService, error: Exception) -> None:
        super().__init__(repos)
        self.error = error

    def create(self, _image: str, command: list[str], **options: Any) -> Container:
        made = VanishingContainer(self.error)
        self.made[made.id] = made
        return made


@pytest.mark.parametrize(
    "error",
    ["removed", "engine down"],
)
def test_a_datum_whose_container_vanishes_fails_without_spinning(
    repos: RepoService, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    """The runner's wait took any error of the engine's wait as "still running after
    this slice": a container removed under it (``docker.errors.NotFound`` is a requests
    error) or an engine that is down answers at once, so the job thread called the
    engine in a tight loop, for ever when the spec had no timeout. The datum must fail,
    naming why, and the calls stay a few per slice."""
    import docker.errors
    import requests

    from pfs_volume.pipelines import containers as runner

    monkeypatch.setattr(runner, "ENGINE_GONE", 3.0)
    raised: Exception = (
        docker.errors.NotFound("No such container")
        if error == "removed"
        else requests.exceptions.ConnectionError("connection refused")
    )
    engine = Engine(repos)
    engine.containers = VanishingContainers(repos, raised)
    engine.api = Api(engine.containers)
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        pipelines.create(SPEC)
        began = time.monotonic()
        pipelines.tick()
        settled = pipelines.settle(20)
        took = time.monotonic() - began
        waits = sum(c.waits for c in engine.containers.made.values())  # type: ignore[attr-defined]
        assert settled, f"the job still runs after {took:.0f} s ({waits} waits)"
        job = pipelines.jobs.list("up")[-1]
        assert job.state == "failure", job
        assert waits <= 4 * took / runner.POLL + 4, f"{waits} waits in {took:.1f} s"
        (datum,) = job.datums
        wanted = "removed" if error == "removed" else "engine"
        assert wanted in (datum.error or ""), datum
    finally:
        pipelines.stop()


@pytest.mark.parametrize(
    ("first", "second"),
    [("raw-data", "raw_data"), ("a.b", "A_B"), ("x", "id"), ("x", "try")],
)
def test_inputs_whose_datum_variables_collide_are_refused(
    repos: RepoService, first: str, second: str
) -> None:
    """``PFS_DATUM_<INPUT>`` upper-cases the name and turns other characters into ``_``:
    inputs ``raw-data`` and ``raw_data`` (names default to repos) both set
    ``PFS_DATUM_RAW_DATA``, one silently the other's path, and an input ``id`` replaced
    ``PFS_DATUM_ID``; a datum then processed the wrong input and the job committed it.
    Such a spec must be refused, naming the variable."""
    for repo in (first, second):
        repos.create_repo(repo)
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: None, "pfs"),
    )
    try:
        spec = {
            "name": "p",
            "input": {"cross": [{"repo": first, "glob": "/*"}, {"repo": second, "glob": "/*"}]},
            "transform": {"image": "busybox", "cmd": ["true"]},
        }
        with pytest.raises(InvalidRequest, match="PFS_DATUM_"):
            pipelines.create(spec)
        assert pipelines.list_specs() == []
    finally:
        pipelines.stop()


def test_a_stored_spec_with_colliding_variables_sets_neither() -> None:
    """A spec stored before the check: the variables two inputs share are left unset
    (the datum reads /pfs/datum), and an input never replaces PFS_DATUM_ID."""
    parts = (("raw-data", "f"), ("raw_data", "g"), ("id", "h"), ("ok", "i"))
    env = datum_environment("j", Datum(parts, "print"))
    assert "PFS_DATUM_RAW_DATA" not in env
    assert env["PFS_DATUM_ID"] == Datum(parts, "print").id
    assert env["PFS_DATUM_OK"] == "/pfs/in/ok/i"


class Endless(Container):
    """A datum container that runs until removed, printing nothing."""

    def __init__(self) -> None:
        super().__init__(0)
        self.gone = threading.Event()

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        if self.gone.wait(timeout):
            return {"StatusCode": 137}
        raise requests.exceptions.ReadTimeout("still running")

    def remove(self, **_options: Any) -> None:
        self.gone.set()

    def kill(self) -> None:
        self.gone.set()


class EndlessContainers(Containers):
    def create(self, _image: str, command: list[str], **options: Any) -> Container:
        made = Endless()
        self.made[made.id] = made
        return made


class EndlessApi(Api):
    def inspect_container(self, container_id: str) -> dict[str, Any]:
        gone = self.containers.made[container_id].gone.is_set()  # type: ignore[attr-defined]
        return {"State": {"Status": "exited" if gone else "running", "OOMKilled": False}}


def test_a_follower_that_hung_up_frees_its_slot(
    repos: RepoService, volumes: VolumeService, tmp_path: Path
) -> None:
    """``pfs job logs --follow`` of a quiet job, then Ctrl-C (or a client that asks and
    leaves): the follow noticed the client's end only when it wrote a line, so each kept
    its follower slot and an API worker thread for as long as the job stayed quiet (up
    to an hour). Two such clients and nobody could follow any job."""
    engine = Engine(repos)
    engine.containers = EndlessContainers(repos)
    engine.api = EndlessApi(engine.containers)
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    server = UnixSocketServer(
        api_app(repos, volumes, pipelines=pipelines), tmp_path / "api.sock", "api"
    )
    server.start()
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        pipelines.create(SPEC)
        pipelines.tick()
        deadline = time.monotonic() + 20
        while pipelines.jobs.list("up")[-1].state != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        job = pipelines.jobs.list("up")[-1].id
        ask = f"GET /v1/jobs/{job}/logs?follow=true HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for _ in range(joblogs.MAX_FOLLOWERS + 1):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(server.path))
                client.sendall(ask)
                time.sleep(0.5)  # the follow has started; then the client goes
        deadline = time.monotonic() + 10
        while True:  # a follow taken answers nothing until a line comes; a refusal at once
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(1.5)
                client.connect(str(server.path))
                client.sendall(ask)
                try:
                    answer = client.recv(100)
                except TimeoutError:
                    break  # being followed
            assert b" 503 " not in answer[:20] or time.monotonic() < deadline, (
                "follows still refused 10 s after their clients left"
            )
            assert b" 503 " in answer[:20], answer
            time.sleep(0.5)
    finally:
        pipelines.stop()
        server.stop()


def test_a_crash_after_the_output_commit_does_not_commit_the_job_again(
    repos: RepoService,
) -> None:
    """The daemon killed between the output commit (one metadata transaction) and the
    job's end (another): start-up marked the job failed ("interrupted") although its
    output was committed, and ran it again, committing the same output a second time
    (with another job id, so every downstream pipeline ran again). The job that made
    the head commit must end as the success it was, and run once."""
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: Engine(repos), "pfs"),
    )
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        pipelines.create(SPEC)
        first = run(pipelines)
        assert first["state"] == "success", first
        done = pipelines.jobs.get(first["id"])
        assert done is not None and done.output is not None
        head = repos.get_branch("up", "master").head
        # As the kill left it: the commit made, the job's end not recorded.
        pipelines.jobs.save(replace(done, state="running", output=None, datums=(), finished=None))
        pipelines.scheduler.recover()
        pipelines.tick()
        assert pipelines.settle(30)
        jobs = pipelines.jobs.list("up")
        assert [j.id for j in jobs] == [first["id"]], "the job ran again"
        assert jobs[0].state == "success" and jobs[0].output == done.output, jobs[0]
        assert [d.id for d in jobs[0].datums] == [d.id for d in done.datums]
        assert repos.get_branch("up", "master").head == head, "a second output commit"
    finally:
        pipelines.stop()


def test_a_job_failing_on_storage_leaves_no_scratch(
    repos: RepoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full pool (or any storage error) while a datum's output is kept: the job failed,
    but the datum's scratch subvolume, with all the container wrote, stayed under
    ``pipelines/P/scratch/JOB`` for good (only killed, timed-out and interrupted jobs'
    scratch was dropped), eating the space a full pool needs back."""
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: Engine(repos), "pfs"),
    )
    real = repos.pool.snapshot

    def full(source: Path, target: Path, *, readonly: bool) -> None:
        if "datums" in target.parts:
            raise StorageError("No space left on device (as a full pool answers)")
        real(source, target, readonly=readonly)

    monkeypatch.setattr(repos.pool, "snapshot", full)
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha" * 100_000)
        pipelines.create(SPEC)
        ended = run(pipelines)
        assert ended["state"] == "failure", ended
        assert "No space" in (pipelines.jobs.get(ended["id"]).error or "")  # type: ignore[union-attr]
        scratch = pipelines.runner.root / "up" / "scratch"
        left = (
            sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))
            if scratch.exists()
            else []
        )
        assert left == [], f"scratch left behind: {left}"
        assert repos.get_branch("up", "master").head is None
    finally:
        pipelines.stop()


def test_a_chatty_datums_log_file_is_bounded(
    repos: RepoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner wrote all a container printed into its log file on the pool, kept
    until the pipeline is deleted: one ``yes`` in a transform filled the pool (every
    commit of every repo then failed). What a datum's log keeps is bounded; the rest is
    counted in a last line."""
    from pfs_volume.pipelines import containers as runner

    monkeypatch.setattr(runner, "MAX_LOG", 8 * MIB)
    engine = Engine(repos)
    engine.api.logs = lambda *_a, **_o: (b"y\n" * (MIB // 2) for _ in range(CHATTY // MIB))  # type: ignore[method-assign]
    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    try:
        repos.create_repo("text")
        put(repos, "a", b"alpha")
        pipelines.create(SPEC)
        ended = run(pipelines)
        assert ended["state"] == "success", ended
        (written,) = list(pipelines.runner.logs_dir("up", ended["id"]).glob("*.log"))
        size = written.stat().st_size
        assert size <= 8 * MIB + 1024, f"{size} bytes of log kept"
        with open(written, "rb") as log_file:
            log_file.seek(size - 300)
            tail = log_file.read()
        assert b"left out" in tail and str(CHATTY - 8 * MIB).encode() in tail, tail
    finally:
        pipelines.stop()


def test_big_stored_specs_are_not_validated_again_on_every_look(
    repos: RepoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every trigger pass (each second) and every writable Docker mount (the plugin
    socket, 2 s to answer) read and validated every stored pipeline spec anew. Specs
    may be 1 MiB (40,000 variables in ``transform.env``: 0.35 s each to validate), and
    there is no limit on how many: 6 of them kept the daemon busy for good and made
    each mount take over 2 s. A stored spec already validated must cost a lookup."""
    from pfs_volume.pipelines.spec import canonical
    from pfs_volume.pipelines.uses import PipelineUses

    pipelines = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: None, "pfs"),
    )
    try:
        repos.create_repo("big")
        env = {f"V{i}": "x" for i in range(40_000)}
        for n in range(6):
            pipelines.create(
                {
                    "name": f"p{n}",
                    "input": {"repo": "big", "glob": "/*"},
                    "transform": {"image": "busybox", "cmd": ["true"], "env": env},
                }
            )
        uses = PipelineUses(repos.store)
        uses("big")
        pipelines.scheduler.documents.list()
        validated: list[object] = []
        real_validate = canonical.validate

        def counting(spec: Any) -> Any:
            validated.append(spec)
            return real_validate(spec)

        monkeypatch.setattr(canonical, "validate", counting)
        for _ in range(3):
            assert len(uses("big")) == 6
            assert len(pipelines.scheduler.documents.list()) == 6
        assert validated == [], f"{len(validated)} stored specs were validated again"
    finally:
        pipelines.stop()
