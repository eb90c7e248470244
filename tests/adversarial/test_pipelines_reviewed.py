"""Pipelines attacked the way a user hits them, on a real btrfs pool.

Datums run through a stand-in for the Docker engine: each "container" reads its
``/pfs/datum/datum.json`` and writes, for every input of the datum, a file named after
the input holding the input commit it saw. Subvolumes, snapshots, commits and the
trigger are the real thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.errors import Conflict
from pfs_volume.files import FileService
from pfs_volume.names import Ref
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.repos import RepoService
from tests import fake_docker
from tests.fake_docker import Container


class Containers(fake_docker.Containers):
    """Each datum's container writes, per input, which volume it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def create(self, _image: str, command: list[str], **options: Any) -> Container:
        mounts = {m["Target"]: m["Source"] for m in options["mounts"]}
        out = Path(mounts["/pfs/out"])
        datum = json.loads((Path(mounts["/pfs/datum"]) / "datum.json").read_text())
        for item in datum["inputs"]:
            volume = mounts[f"/pfs/in/{item['name']}"]
            (out / f"{item['name']}-{datum['id'][:8]}").write_text(volume.split("/", 1)[1])
        self.runs += 1
        return self.keep(Container(0))


class Engine(fake_docker.Engine):
    def __init__(self) -> None:
        self.containers: Containers = Containers()
        super().__init__(self.containers)


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def pipelines(repos: RepoService, engine: Engine) -> Iterator[PipelineService]:
    service = PipelineService(
        repos,
        repos.store,
        repos.coordinator.node_id,
        JobRunner(repos, repos.pool, lambda: engine, "pfs"),
    )
    yield service
    service.stop()


def put(repos: RepoService, repo: str, branch: str, path: str, data: bytes) -> str:
    FileService(repos).put(repo, branch, path, BytesIO(data))
    head = repos.get_branch(repo, branch).head
    assert head is not None
    return head


def settle(pipelines: PipelineService) -> None:
    for _ in range(20):
        before = len(pipelines.jobs.list())
        pipelines.tick()
        assert pipelines.settle(30), "a job did not end"
        jobs = pipelines.jobs.list()
        if len(jobs) == before and all(j.done for j in jobs):
            return
    raise AssertionError("jobs kept coming")


def head(repos: RepoService, repo: str, branch: str = "master") -> str | None:
    return repos.get_branch(repo, branch).head


def test_two_inputs_of_one_repo_on_a_branch_made_from_the_other(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """``dev`` is made from ``master`` (it points at a master commit); a pipeline reads
    both. A new master commit must reach the pipeline: the two branches are not one."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    repos.create_branch("a", "dev", Ref("master"))
    pipelines.create(
        {
            "name": "both",
            "input": {
                "cross": [
                    {"repo": "a", "branch": "master", "name": "m"},
                    {"repo": "a", "branch": "dev", "name": "d"},
                ]
            },
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    settle(pipelines)
    newer = put(repos, "a", "master", "y", b"2")
    settle(pipelines)
    latest = pipelines.jobs.list("both")[-1]
    assert latest.state == "success"
    assert latest.inputs["m"] == f"a@{newer}", "master's new commit never reached the job"


def test_a_pipeline_moved_to_a_new_output_branch_fills_it(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """``pipeline update`` that changes only the output: the new output branch gets the
    output of the current inputs (it is where downstream pipelines and users read)."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    spec: dict[str, Any] = {
        "name": "p",
        "input": {"repo": "a", "glob": "/*"},
        "transform": {"image": "i", "cmd": ["x"]},
    }
    pipelines.create(spec)
    settle(pipelines)
    assert head(repos, "p") is not None
    pipelines.update({**spec, "output": {"repo": "p", "branch": "v2"}})
    settle(pipelines)
    assert head(repos, "p", "v2") is not None, "the new output branch stays empty"
    made = repos.get_commit("p", head(repos, "p", "v2") or "")
    assert made.provenance == (f"a@{head(repos, 'a')}",)


def test_wait_on_a_commit_a_pipeline_took_in_before_it_was_stopped(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """The pipeline succeeded on the commit, then was stopped: the commit has gone
    through it, so ``pfs wait`` says success (exit 0), not stopped."""
    repos.create_repo("a")
    commit = put(repos, "a", "master", "x", b"1")
    pipelines.create(
        {
            "name": "p",
            "input": {"repo": "a", "glob": "/*"},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    settle(pipelines)
    assert pipelines.wait_commit("a", commit, 0).succeeded
    pipelines.stop_pipeline("p")
    progress = pipelines.wait_commit("a", commit, 0)
    assert progress.done
    assert [p.state for p in progress.pipelines] == ["success"], progress


def test_wait_on_a_commit_that_went_through_before_a_later_commit_failed(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """a1 went through p; the job on a2 fails. ``pfs wait a@a1`` says success."""
    repos.create_repo("a")
    first = put(repos, "a", "master", "x", b"1")
    pipelines.create(
        {
            "name": "p",
            "input": {"repo": "a", "glob": "/*"},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    settle(pipelines)
    original = engine.containers.create

    def failing(image: str, command: list[str], **options: Any) -> Container:
        original(image, command, **options)
        made = Container(1)
        engine.containers.made[made.id] = made
        return made

    engine.containers.create = failing  # type: ignore[method-assign]
    put(repos, "a", "master", "y", b"2")
    settle(pipelines)
    assert pipelines.jobs.list("p")[-1].state == "failure"
    progress = pipelines.wait_commit("a", first, 0)
    assert [p.state for p in progress.pipelines] == ["success"], progress


SIMPLE = {
    "name": "p",
    "input": {"repo": "a", "glob": "/*"},
    "transform": {"image": "i", "cmd": ["x"]},
}


def output_commits(repos: RepoService) -> list[str]:
    return [c.id for c in repos.store.list_commits("p") if c.job]


def test_rerun_of_a_queued_job_is_refused(repos: RepoService, pipelines: PipelineService) -> None:
    """``pfs job rerun`` of a job still queued (or running) would run the same inputs
    twice and commit a duplicate."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    pipelines.scheduler._queue_if_moved(pipelines.document("p"))  # queued, not started
    queued = pipelines.jobs.list("p")[-1]
    assert queued.state == "queued"
    with pytest.raises(Conflict):
        pipelines.rerun(queued.id)
    settle(pipelines)
    assert len(output_commits(repos)) == 1


def test_rerun_after_a_reprocess_that_succeeded_is_refused(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """update --reprocess runs a new job on the same inputs; once it succeeded, a rerun
    of the job before it would commit the same output again."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    first = pipelines.jobs.list("p")[-1]
    pipelines.update(SIMPLE, reprocess=True)
    settle(pipelines)
    second = pipelines.jobs.list("p")[-1]
    assert second.id != first.id and second.state == "success"
    assert len(output_commits(repos)) == 2
    with pytest.raises(Conflict):
        pipelines.rerun(first.id)
    settle(pipelines)
    assert len(output_commits(repos)) == 2


def test_rerun_after_a_reprocess_never_moves_the_output_back(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """j1 ran on a1; a2 came and update --reprocess ran j2 on it: rerunning j1 would
    put a1's output back on the branch."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    first = pipelines.jobs.list("p")[-1]
    put(repos, "a", "master", "y", b"2")
    pipelines.update(SIMPLE, reprocess=True)
    settle(pipelines)
    assert pipelines.jobs.list("p")[-1].inputs != first.inputs
    with pytest.raises(Conflict):
        pipelines.rerun(first.id)


def test_a_diamond_after_a_fast_forward_merge_never_mixes_commits(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """dev is merged into master by a fast-forward: master's head is a commit made on
    dev. b reads master; c reads master and b. When master moves on and b has not
    caught up, c must not pair master's new commit with b's output of the older one."""
    from pfs_volume.history.service import HistoryService

    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(
        {
            "name": "b",
            "input": {"repo": "a", "glob": "/*"},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    pipelines.create(
        {
            "name": "c",
            "input": {"cross": [{"repo": "a", "glob": "/"}, {"repo": "b", "glob": "/"}]},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    settle(pipelines)
    repos.create_branch("a", "dev", Ref("master"))
    on_dev = put(repos, "a", "dev", "y", b"2")
    HistoryService(repos).merge("a", "dev", "master")
    assert head(repos, "a") == on_dev, "a fast-forward"
    settle(pipelines)
    caught_up = pipelines.jobs.list("c")[-1]
    assert caught_up.state == "success" and caught_up.inputs["a"] == f"a@{on_dev}"
    pipelines.stop_pipeline("b")
    put(repos, "a", "master", "z", b"3")
    settle(pipelines)
    latest = pipelines.jobs.list("c")[-1]
    made_from = repos.get_commit("b", latest.inputs["b"].split("@")[1]).provenance
    assert made_from == (latest.inputs["a"],), f"c mixed {latest.inputs} (b made from {made_from})"


def test_wait_on_a_branch_made_from_another_waits_for_its_pipelines(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """``pfs wait a@dev`` (dev made from master, no commit of its own yet) waits for the
    pipelines that read dev, not for master's."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    repos.create_branch("a", "dev", Ref("master"))
    pipelines.create(
        {
            "name": "p",
            "input": {"repo": "a", "branch": "dev", "glob": "/*"},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    commit = head(repos, "a", "dev")
    assert commit is not None
    assert [p.pipeline for p in pipelines.wait_commit("a", commit, 0, branch="dev").pipelines] == [
        "p"
    ]
    settle(pipelines)
    progress = pipelines.wait_commit("a", commit, 0, branch="dev")
    assert [p.state for p in progress.pipelines] == ["success"], progress


def test_an_update_while_a_job_is_queued_runs_the_inputs_once(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """The job queued before the update runs with the new spec (the old one is gone): a
    second job on the same inputs would run every datum again and commit a duplicate."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    pipelines.scheduler._queue_if_moved(pipelines.document("p"))  # queued, not started
    pipelines.update({**SIMPLE, "transform": {"image": "i", "cmd": ["y"]}})
    settle(pipelines)
    assert [j.state for j in pipelines.jobs.list("p")] == ["success"]
    assert engine.containers.runs == 1
    assert len(output_commits(repos)) == 1


def test_rerun_of_a_job_of_a_deleted_pipeline_of_the_same_name_is_refused(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """A job of the pipeline before it was deleted and made again is not the new one's."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    old = pipelines.jobs.list("p")[-1]
    pipelines.delete("p")
    put(repos, "a", "master", "y", b"2")
    pipelines.create({**SIMPLE, "transform": {"image": "i", "cmd": ["fails"]}})
    with pytest.raises(Conflict):
        pipelines.rerun(old.id)


def commit_files(repos: RepoService, repo: str, files: dict[bytes, bytes]) -> str:
    import os

    work = repos.working_copy(repo, "master")
    for path, data in files.items():
        target = os.path.join(os.fsencode(work), path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(data)
    made = repos.commit_working_copy(repo, "master", "files", origin="user")
    assert made is not None
    return made.id


def test_datums_at_depth_two_with_names_no_encoding_survives(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """glob /*/* over folders and files named with newlines, a leading dash and bytes
    that are not UTF-8: each datum's paths file holds the exact bytes; a change to one
    file reruns only its datum."""
    import base64

    seen: list[bytes] = []
    original = engine.containers.create

    def recording(image: str, command: list[str], **options: Any) -> Container:
        mounts = {m["Target"]: m["Source"] for m in options["mounts"]}
        folder = Path(mounts["/pfs/datum"])
        paths = (folder / "paths").read_bytes()
        doc = json.loads((folder / "datum.json").read_text())
        assert paths == b"".join(base64.b64decode(i["path_base64"]) + b"\0" for i in doc["inputs"])
        seen.append(paths)
        return original(image, command, **options)

    engine.containers.create = recording  # type: ignore[method-assign]
    repos.create_repo("a")
    names = [b"d\n1/-f\xff", b"d\n1/g h", b"\xfe dir/x", b"top"]
    commit_files(repos, "a", {n: n for n in names})
    pipelines.create({**SIMPLE, "input": {"repo": "a", "glob": "/*/*"}})
    settle(pipelines)
    assert pipelines.jobs.list("p")[-1].state == "success"
    assert sorted(seen) == sorted(b"/pfs/in/a/" + n + b"\0" for n in names[:3])
    seen.clear()
    commit_files(repos, "a", {b"d\n1/-f\xff": b"changed"})
    settle(pipelines)
    job = pipelines.jobs.list("p")[-1]
    assert job.state == "success"
    assert seen == [b"/pfs/in/a/d\n1/-f\xff\0"], seen
    assert sorted(d.state for d in job.datums) == ["reused", "reused", "success"]


def test_an_input_emptied_gives_an_empty_output_commit_with_provenance(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """Every file of the input removed: glob /* has no datum; the job still succeeds and
    its (empty) output commit records the input commit, so the output no longer shows
    the files' old results."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    work = repos.working_copy("a", "master")
    (work / "x").unlink()
    emptied = repos.commit_working_copy("a", "master", "rm", origin="user")
    assert emptied is not None
    settle(pipelines)
    job = pipelines.jobs.list("p")[-1]
    assert job.state == "success" and job.inputs == {"a": f"a@{emptied.id}"}
    made = repos.get_commit("p", head(repos, "p") or "")
    assert made.provenance == (f"a@{emptied.id}",)
    assert list(repos.commit_path("p", made.id).iterdir()) == []


def api(repos: RepoService, pipelines: PipelineService) -> Any:
    from pfs_volume.volumes import VolumeService
    from tests.api_app import api_app

    volumes = VolumeService(repos, repos.store, prefix="pfs")
    return api_app(repos, volumes, pipelines=pipelines).test_client()


def test_inspect_of_a_pipeline_made_again_shows_none_of_the_old_ones_jobs(
    repos: RepoService, pipelines: PipelineService
) -> None:
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    pipelines.delete("p")
    pipelines.create(SIMPLE)
    shown = api(repos, pipelines).get("/v1/pipelines/p").get_json()
    assert shown["jobs"] == [], "the deleted pipeline's job shows as the new one's"


def test_wait_names_a_branch_made_from_another_over_the_api(
    repos: RepoService, pipelines: PipelineService
) -> None:
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    repos.create_branch("a", "dev", Ref("master"))
    pipelines.create(
        {
            "name": "p",
            "input": {"repo": "a", "branch": "dev", "glob": "/*"},
            "transform": {"image": "i", "cmd": ["x"]},
        }
    )
    client = api(repos, pipelines)
    pending = client.get("/v1/repos/a/commits/dev/wait?timeout=0").get_json()
    assert [p["pipeline"] for p in pending["pipelines"]] == ["p"] and not pending["done"]
    settle(pipelines)
    done = client.get("/v1/repos/a/commits/dev/wait?timeout=0").get_json()
    assert done["succeeded"] and [p["state"] for p in done["pipelines"]] == ["success"]


def test_a_job_running_when_its_output_moved_never_writes_the_old_branch(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """p's job runs; p is updated to write p/v2, and q is made with p/master as its
    output. The old job must not commit into p/master, now q's."""
    import threading

    started, release = threading.Event(), threading.Event()
    original = engine.containers.create

    def blocking(image: str, command: list[str], **options: Any) -> Container:
        started.set()
        assert release.wait(30)
        return original(image, command, **options)

    engine.containers.create = blocking  # type: ignore[method-assign]
    repos.create_repo("a")
    repos.create_repo("other")
    put(repos, "a", "master", "x", b"1")
    put(repos, "other", "master", "x", b"1")
    pipelines.create(SIMPLE)
    pipelines.tick()
    assert started.wait(30)
    before = head(repos, "p")
    pipelines.update({**SIMPLE, "output": {"repo": "p", "branch": "v2"}})
    pipelines.create(
        {
            "name": "q",
            "input": {"repo": "other", "glob": "/"},
            "transform": {"image": "i", "cmd": ["x"]},
            "output": {"repo": "p", "branch": "master"},
        }
    )
    engine.containers.create = original  # type: ignore[method-assign]
    release.set()
    assert pipelines.settle(30)
    made = [c for c in repos.store.list_commits("p") if c.branch == "master" and c.id != before]
    assert all(c.message.endswith("pipeline q") for c in made), [c.message for c in made]
    # The moved pipeline then fills its new output.
    settle(pipelines)
    assert pipelines.jobs.list("p")[0].state == "killed"
    assert pipelines.jobs.list("p")[-1].state == "success"
    assert head(repos, "p", "v2") is not None


def test_a_datum_that_fails_once_then_succeeds_keeps_only_its_last_try(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    tries: dict[str, int] = {}
    original = engine.containers.create

    def flaky(image: str, command: list[str], **options: Any) -> Container:
        mounts = {m["Target"]: m["Source"] for m in options["mounts"]}
        datum = options["environment"]["PFS_DATUM_ID"]
        tries[datum] = tries.get(datum, 0) + 1
        if tries[datum] == 1:
            (Path(mounts["/pfs/out"]) / "half-written").write_text("junk")
            made = Container(1)
            engine.containers.made[made.id] = made
            return made
        return original(image, command, **options)

    engine.containers.create = flaky  # type: ignore[method-assign]
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create({**SIMPLE, "datum_tries": 2})
    settle(pipelines)
    job = pipelines.jobs.list("p")[-1]
    assert job.state == "success", job.error
    assert [d.tries for d in job.datums] == [2]
    names = sorted(p.name for p in repos.commit_path("p", head(repos, "p") or "").iterdir())
    assert "half-written" not in names and len(names) == 1


def test_a_chain_with_shortcuts_never_mixes_and_catches_up(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """a -> b -> c -> d, c also reads a, d also reads b; commits come while jobs run.
    Every job's inputs agree on every branch they share, and the last jobs are on the
    newest commits."""
    repos.create_repo("a")
    put(repos, "a", "master", "x0", b"0")

    def spec(name: str, *reads: str) -> dict[str, Any]:
        inputs = [{"repo": r, "glob": "/"} for r in reads]
        body = {"cross": inputs} if len(inputs) > 1 else inputs[0]
        return {"name": name, "input": body, "transform": {"image": "i", "cmd": ["x"]}}

    pipelines.create(spec("b", "a"))
    pipelines.create(spec("c", "b", "a"))
    pipelines.create(spec("d", "c", "b"))
    for n in range(1, 6):
        put(repos, "a", "master", f"x{n}", str(n).encode())
        pipelines.tick()  # no settle: jobs run while the next commit comes
    settle(pipelines)
    closure = pipelines.scheduler.provenance.closure
    for job in pipelines.jobs.list():
        seen: dict[tuple[str, str], set[str]] = {}
        for name, ref in job.inputs.items():
            repo, commit = ref.split("@")
            for branch, at in closure(repo, commit, job.branches.get(name)).items():
                seen.setdefault(branch, set()).add(at)
        mixed = {b: c for b, c in seen.items() if len(c) > 1}
        assert not mixed, f"job {job.id} of {job.pipeline} mixed {mixed}"
    newest = head(repos, "a")
    for name in ("b", "c", "d"):
        latest = pipelines.jobs.list(name)[-1]
        assert latest.state == "success"
        top = repos.get_commit(name, head(repos, name) or "")
        assert closure(name, top.id).get(("a", "master")) == newest, name


def test_inputs_whose_variables_would_be_one_are_refused(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """Inputs "in-a" and "in_a" would both be PFS_DATUM_IN_A: a datum would see one
    input's path under the other's name. The spec is refused, naming both."""
    from pfs_volume.errors import InvalidRequest

    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    with pytest.raises(InvalidRequest) as refused:
        pipelines.create(
            {
                "name": "p",
                "input": {
                    "cross": [
                        {"repo": "a", "glob": "/*", "name": "in-a"},
                        {"repo": "a", "glob": "/", "name": "in_a"},
                    ]
                },
                "transform": {"image": "i", "cmd": ["x"]},
            }
        )
    assert "PFS_DATUM_IN_A" in str(refused.value)


def test_job_lookups_read_only_what_can_match_and_are_not_fooled(repos: RepoService) -> None:
    """The trigger's lookups (a pipeline's latest job, the queued jobs) skip other
    records unparsed; a datum whose input is named "pipeline" or "state" cannot fake a
    match."""
    from pfs_volume.pipelines.jobs import DatumResult, JobRecord, JobStore, new_job_id

    jobs = JobStore(repos.store)
    fake = (DatumResult("0" * 64, {"pipeline": "p1", "state": "queued"}, "success", 1.0, 0, "j"),)
    made = [
        jobs.add(
            JobRecord(
                id=new_job_id(),
                pipeline=f"p{i % 2}",
                inputs={"pipeline": "a@x"},
                state="queued" if i == 2 else "success",
                datums=fake,
            )
        )
        for i in range(4)
    ]
    assert [j.id for j in jobs.list("p1")] == [made[1].id, made[3].id]
    assert [j.id for j in jobs.list(state="queued")] == [made[2].id]
    latest = jobs.latest("p0")
    assert latest is not None and latest.id == made[2].id
    assert jobs.latest("p0", after=made[2].id) is None
    assert jobs.latest("p1", after=made[2].id) == jobs.get(made[3].id)


def test_a_wait_answered_at_once_does_not_spin() -> None:
    """Beyond its wait slots the daemon answers a wait at once; the CLI must not ask
    again in a tight loop."""
    import time

    from pfs_volume.cli.waiting import wait_until as _wait_until

    asked: list[float] = []

    def ask(_slice: float) -> dict[str, Any]:
        asked.append(time.monotonic())
        return {"done": False}

    with pytest.raises(SystemExit) as ended:
        _wait_until(ask, lambda result: bool(result["done"]), 2.0, "x")
    assert ended.value.code == 2
    assert len(asked) <= 4, f"{len(asked)} requests in 2 s"


def test_a_reprocess_while_a_job_is_queued_runs_the_inputs_once(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """Found by the review of the merge: the job queued before ``update --reprocess``
    ran every datum, then a second job on the same inputs did it again and committed a
    duplicate. The queued job is superseded; one job runs every datum, once."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    put(repos, "a", "master", "y", b"2")
    pipelines.create({**SIMPLE, "input": {"repo": "a", "glob": "/*"}})
    settle(pipelines)
    first_runs = engine.containers.runs
    put(repos, "a", "master", "z", b"3")
    pipelines.scheduler._queue_if_moved(pipelines.document("p"))  # queued, not started
    pipelines.update({**SIMPLE, "input": {"repo": "a", "glob": "/*"}}, reprocess=True)
    settle(pipelines)
    jobs = pipelines.jobs.list("p")
    assert [j.state for j in jobs] == ["success", "killed", "success"], jobs
    assert "superseded" in (jobs[1].error or "")
    assert engine.containers.runs - first_runs == 3, "every datum ran once, not twice"
    assert len(output_commits(repos)) == 2


CHAIN = [
    {**SIMPLE, "name": "p1", "input": {"repo": "a", "glob": "/*"}},
    {**SIMPLE, "name": "p2", "input": {"repo": "p1", "glob": "/*"}},
]


def test_wait_after_a_reset_never_skips_a_pipeline_its_upstream_fed_the_commit(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """Found by the final review: p1 took a@c2 in and committed; before p2's next pass,
    a/master is reset past c2. p2 still runs on p1's output made from c2, yet the wait
    said p2 was ``skipped`` (done) before it did."""
    repos.create_repo("a")
    first = put(repos, "a", "master", "x", b"1")
    for spec in CHAIN:
        pipelines.create(spec)
    settle(pipelines)
    second = put(repos, "a", "master", "y", b"2")
    pipelines.tick()  # p1 runs on c2; p2 has not looked at p1's new output yet
    assert pipelines.settle(30)
    assert pipelines.jobs.list("p1")[-1].inputs == {"a": f"a@{second}"}
    repos.reset_branch("a", "master", Ref(first))
    progress = pipelines.wait_commit("a", second, 0)
    states = {p.pipeline: p.state for p in progress.pipelines}
    assert states["p1"] == "success"
    assert states["p2"] != "skipped", progress
    settle(pipelines)
    states = {p.pipeline: p.state for p in pipelines.wait_commit("a", second, 0).pipelines}
    assert states == {"p1": "success", "p2": "success"}, "p2 did take the commit in"


def test_wait_on_a_commit_whose_job_was_stopped_then_reset_past_ends(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """Found by the final review: the job on c2 was killed by a stop (pfs reruns such
    jobs by itself, so ``pfs wait`` counts it pending); a/master is reset past c2 and the
    pipeline started again: no job will ever take c2 in, yet the wait stayed pending."""
    repos.create_repo("a")
    first = put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    second = put(repos, "a", "master", "y", b"2")
    pipelines.scheduler._queue_if_moved(pipelines.document("p"))  # queued, not started
    pipelines.stop_pipeline("p")
    repos.reset_branch("a", "master", Ref(first))
    pipelines.start_pipeline("p")
    settle(pipelines)
    progress = pipelines.wait_commit("a", second, 0)
    assert progress.done, progress


def test_a_job_whose_end_was_recorded_is_not_marked_interrupted_after(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """Found by the final review: when the clean-up after a job's recorded success
    raised (anything but PfsError/OSError), the job was rewritten as interrupted, and
    the trigger ran its inputs again: a second run and a duplicate output commit."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)

    def broken(_pipeline: str) -> None:
        raise ValueError("a datum output folder's name is not a job id")

    pipelines.scheduler.after_job = broken
    settle(pipelines)
    jobs = pipelines.jobs.list("p")
    assert [j.state for j in jobs] == ["success"], jobs
    assert engine.containers.runs == 1
    assert len(output_commits(repos)) == 1


def test_a_stop_as_a_queued_job_is_superseded_by_a_reprocess_runs_nothing(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """Found by the final review: the pass superseding a job queued before ``update
    --reprocess`` overwrote a stop that had just killed it (``_finish`` saves over a
    conflict), then queued and started a new job: a stopped pipeline ran and
    committed."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    runs, commits = engine.containers.runs, len(output_commits(repos))
    put(repos, "a", "master", "y", b"2")
    pipelines.scheduler._queue_if_moved(pipelines.document("p"))  # queued, not started
    pipelines.update(SIMPLE, reprocess=True)
    latest = pipelines.scheduler.jobs.latest
    stopped: list[str] = []

    def then_stopped(pipeline: str, after: str = "") -> Any:
        found = latest(pipeline, after)
        if not stopped:  # the stop comes as the pass looks at the queued job
            stopped.extend(pipelines.stop_pipeline("p"))
        return found

    pipelines.scheduler.jobs.latest = then_stopped  # type: ignore[method-assign]
    pipelines.tick()
    assert pipelines.settle(30)
    jobs = pipelines.jobs.list("p")
    assert [j.state for j in jobs] == ["success", "killed"], jobs
    assert "stopped" in (jobs[-1].error or ""), jobs[-1]
    assert engine.containers.runs == runs and len(output_commits(repos)) == commits


def test_a_stop_during_a_trigger_pass_starts_no_job_of_the_pipeline(
    repos: RepoService, pipelines: PipelineService, engine: Engine
) -> None:
    """Found by the final review: a pass read the pipelines, then ``pipeline stop``
    returned (nothing queued or running to kill), then the pass queued a job on the new
    commit and started it from what it had read: the stopped pipeline committed."""
    repos.create_repo("a")
    put(repos, "a", "master", "x", b"1")
    pipelines.create(SIMPLE)
    settle(pipelines)
    runs, commits = engine.containers.runs, len(output_commits(repos))
    put(repos, "a", "master", "y", b"2")
    latest = pipelines.scheduler.jobs.latest
    stopped: list[str] = []

    def then_stopped(pipeline: str, after: str = "") -> Any:
        found = latest(pipeline, after)
        if not stopped:  # the stop comes as the pass looks at the pipeline
            stopped.append("p")
            assert pipelines.stop_pipeline("p") == []
        return found

    pipelines.scheduler.jobs.latest = then_stopped  # type: ignore[method-assign]
    pipelines.tick()
    assert pipelines.settle(30)
    assert engine.containers.runs == runs and len(output_commits(repos)) == commits, (
        pipelines.jobs.list("p")
    )
    ended = pipelines.jobs.list("p")[-1]
    assert ended.state == "killed" and "stopped" in (ended.error or ""), ended
    pipelines.scheduler.jobs.latest = latest  # type: ignore[method-assign]
    pipelines.start_pipeline("p")
    settle(pipelines)
    assert len(output_commits(repos)) == commits + 1, "the commit never went through"


def test_a_queued_job_another_node_started_is_never_saved_over_as_killed(
    repos: RepoService, pipelines: PipelineService
) -> None:
    """A pass that read a job as queued, then found its pipeline stopped or deleted,
    must not overwrite the job when another node started it meanwhile."""
    from dataclasses import replace

    from pfs_volume.pipelines.jobs import JobRecord, new_job_id
    from pfs_volume.pipelines.reasons import DELETED

    queued = pipelines.jobs.add(JobRecord(id=new_job_id(), pipeline="gone", inputs={}))
    pipelines.jobs.save(replace(queued, state="running", node="other"))
    pipelines.scheduler._kill_queued(queued, DELETED)  # the pass's stale read
    stored = pipelines.jobs.get(queued.id)
    assert stored is not None and stored.state == "running" and stored.node == "other"
