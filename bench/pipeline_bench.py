"""Pipeline jobs against the same containers run by hand, and incremental reruns.

A private Docker engine (``tests/docker_engine.py``, busybox from Debian's
``busybox-static``) and a real ``pfs serve`` running its pipelines on it. Every pipeline
is ``glob: /*`` over a repo of small files with the transform

  sh -c 'f=/pfs/in/text/$(basename "$PFS_DATUM_TEXT"); wc -c < "$f" > "/pfs/out/$(basename "$f").n"'

    overhead      a job over 1 and over 100 files (one datum each) against the same
                  containers by hand: the docker SDK's create, start, wait, logs and
                  remove, as pfs makes them, with the input folder and an output folder
                  bind-mounted, one after another, then one ``cp`` of the outputs into a
                  single folder. A fresh repo and pipeline per repetition.
    incremental   a job over 1,000 files, then the job after ONE file changed (one
                  datum runs, 999 are reused).

Targets: pfs job time / by hand <= 1.3 (parallelism 1); full / incremental job >= 20.
A job's time is its record's ``finished - created``. The daemon runs with a timing hook
(a ``sitecustomize`` this script writes; ``--no-profile`` leaves it out) that adds up
where each job's time goes. Run as root from the repo root:

    PYTHONPATH=/work/main .venv/bin/python bench/pipeline_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import docker
import requests_unixsocket
from docker.types import DriverConfig
from docker.types import Mount as DockerMount

from bench._common import (
    PluginClient,
    fmt_ratio,
    fmt_seconds,
    load_average,
    machine_notes,
    median,
    print_notes,
    require_root,
    table,
    verdict,
    write_results,
)
from pfs_volume.btrfs.pool_image import is_mountpoint
from tests.docker_engine import DockerEngine
from tests.pfs_node import PfsNode, unique_driver_name

INPUT = "text"
"""Every pipeline's input is mounted at /pfs/in/text; its datum is in PFS_DATUM_TEXT."""
SCRIPT = (
    'f=/pfs/in/text/$(basename "$PFS_DATUM_TEXT"); wc -c < "$f" > "/pfs/out/$(basename "$f").n"'
)
"""PFS_DATUM_TEXT holds the datum's path, relative or absolute: basename reads both."""
DATUM_ENV = "PFS_DATUM_" + INPUT.upper()
FILE_SIZE = 1024
CHANGED_SIZE = 2048
POOL_SIZE = "8G"
OVERHEAD = {"full": ((1, 5), (100, 3)), "quick": ((1, 1), (20, 1))}
"""(files, repetitions) of the overhead runs."""
PARALLEL_FILES = {"full": 100, "quick": 20}
"""The parallelism 2 extra row: one repetition over this many files."""
INCR_FILES = {"full": 1000, "quick": 100}
INCR_CHANGES = {"full": 3, "quick": 1}
"""Successive one-file changes after the full job; the median is reported."""
OVERHEAD_TARGET = 1.3
INCREMENTAL_TARGET = 20.0
POLL = 0.2
"""Seconds between looks at a job's record (its times come from the record)."""
JOB_WAIT_BASE, JOB_WAIT_PER_DATUM = 120.0, 5.0
"""A job may take BASE + PER_DATUM x datums seconds before the run is abandoned."""
CONTAINER_TIMEOUT = 120.0
LOG_LINES_SHOWN = 10
STALL = 1.0
"""A docker create slower than this (seconds) is called out."""

PROFILE_HOOK = '''
"""Written by bench/pipeline_bench.py: add up where a pipeline job's time goes."""
import json, os, threading, time

_DIR = os.environ.get("PFS_BENCH_PROFILE")
_LOCK = threading.Lock()
_TOTALS = {}
_CUMULATIVE = {}
_JOB_THREADS = set()


def _add(label, seconds):
    with _LOCK:
        for totals in (_TOTALS, _CUMULATIVE):
            entry = totals.setdefault(label, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)


def _wrap(owner, attr, label, job_thread_only=False):
    inner = getattr(owner, attr)

    def timed(*args, **kwargs):
        if job_thread_only and threading.get_ident() not in _JOB_THREADS:
            return inner(*args, **kwargs)  # the API's answers to the benchmark's polls
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - start)

    setattr(owner, attr, timed)


class _TimedSubprocess:
    """Stands in for the runner module's ``subprocess``: times ``run`` (the combine's cp)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._real.run(*args, **kwargs)
        finally:
            _add("combine: cp of one datum", time.perf_counter() - start)


def _install():
    import docker.models.containers as containers
    import pfs_volume.pipelines.runner as runner
    from pfs_volume.btrfs.pool import BtrfsPool
    from pfs_volume.pipelines.jobs import JobStore
    from pfs_volume.pipelines.scheduler import Scheduler
    from pfs_volume.repos import RepoService
    from pfs_volume.volumes import VolumeService

    for owner, attr, label, *only in (
        (containers.ContainerCollection, "create", "docker: create"),
        (containers.Container, "start", "docker: start"),
        (containers.Container, "wait", "docker: wait"),
        (containers.Container, "logs", "docker: logs"),
        (containers.Container, "remove", "docker: remove"),
        (VolumeService, "get", "plugin: Get (from dockerd)"),
        (VolumeService, "path", "plugin: Path (from dockerd)"),
        (VolumeService, "mount", "plugin: Mount (from dockerd)"),
        (VolumeService, "unmount", "plugin: Unmount (from dockerd)"),
        (BtrfsPool, "create_subvolume", "btrfs: subvolume create"),
        (BtrfsPool, "snapshot", "btrfs: snapshot"),
        (BtrfsPool, "delete_subvolume", "btrfs: subvolume delete"),
        (runner.JobRunner, "_run_datum", "datum (all of _run_datum)"),
        (runner.JobRunner, "_dirty", "plan: changed datums (diff)"),
        (runner, "_entries", "plan: list input entries"),
        (runner.JobRunner, "_combine", "combine (all of _combine)"),
        (runner, "_files", "combine: list a datum's files"),
        (RepoService, "commit_working_copy", "combine: commit"),
        (JobStore, "save", "job record: save", True),
        (JobStore, "list", "job record: list", True),
    ):
        _wrap(owner, attr, label, *only)
    runner.subprocess = _TimedSubprocess(runner.subprocess)
    inner = Scheduler.run_job

    def run_job(self, job, *args, **kwargs):
        with _LOCK:
            if not _JOB_THREADS:  # jobs at once share one total (and cumulative.json)
                _TOTALS.clear()
            _JOB_THREADS.add(threading.get_ident())
        start = time.perf_counter()
        try:
            return inner(self, job, *args, **kwargs)
        finally:
            total = time.perf_counter() - start
            with _LOCK:
                _JOB_THREADS.discard(threading.get_ident())
                totals = {k: list(v) for k, v in _TOTALS.items()}
                cumulative = {k: list(v) for k, v in _CUMULATIVE.items()}
                body = {"job": job.id, "run_job_s": total, "steps": totals}
                for name, data in (("cumulative", {"steps": cumulative}), (job.id, body)):
                    path = os.path.join(_DIR, name + ".json")
                    with open(path + ".tmp", "w") as handle:
                        json.dump(data, handle)
                    os.replace(path + ".tmp", path)

    Scheduler.run_job = run_job


def _dump_cumulative():
    """Keep cumulative.json current, so a reading between jobs sees every call so far."""
    while True:
        time.sleep(0.25)
        with _LOCK:
            data = {"steps": {k: list(v) for k, v in _CUMULATIVE.items()}}
            path = os.path.join(_DIR, "cumulative.json")
            with open(path + ".tmp", "w") as handle:
                json.dump(data, handle)
            os.replace(path + ".tmp", path)


if _DIR:
    try:
        _install()
        threading.Thread(target=_dump_cumulative, name="bench-profile", daemon=True).start()
    except Exception as exc:  # the daemon must start even when the hook cannot
        with open(os.path.join(_DIR, "hook-error.txt"), "w") as handle:
            handle.write(repr(exc))
'''


def epoch(stamp: str) -> float:
    """Seconds since the epoch of a job record's RFC 3339 time."""
    return datetime.fromisoformat(stamp).timestamp()


def sync_all() -> None:
    subprocess.run(["sync"], check=True)


def contents(count: int) -> dict[str, bytes]:
    """``count`` small files of random bytes."""
    return {f"f{n:05}": os.urandom(FILE_SIZE) for n in range(count)}


class Bench:
    """A pfs daemon and a Docker engine of its own; the pipelines and by-hand runs."""

    def __init__(self, root: Path, profile: bool, args: list[str] | None = None) -> None:
        self.root = root
        self.engine = DockerEngine(root / "docker")
        self.profile_dir: Path | None = root / "profile" if profile else None
        env = {}
        if self.profile_dir is not None:
            hook = root / "hook"
            hook.mkdir(parents=True)
            (hook / "sitecustomize.py").write_text(PROFILE_HOOK, encoding="utf-8")
            self.profile_dir.mkdir()
            env = {
                "PFS_BENCH_PROFILE": str(self.profile_dir),
                "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
            }
        self.node = PfsNode(
            root / "pfs",
            unique_driver_name("pfsbenchpipe"),
            pool_size=POOL_SIZE,
            env={**env, "PFS_DOCKER_HOST": self.engine.host},
            args=args,
        )
        self.plugin = PluginClient(self.node.plugin_socket)
        self.session = requests_unixsocket.Session()  # type: ignore[no-untyped-call]
        self.api_url = "http+unix://" + str(self.node.api_socket).replace("/", "%2F")
        self.image = ""
        self.client: Any = None
        self._names = 0

    def start(self) -> None:
        self.engine.start()
        self.image = self.engine.busybox_image()
        self.node.start()
        if self.profile_dir is not None and (self.profile_dir / "hook-error.txt").exists():
            raise RuntimeError(
                "the timing hook failed: " + (self.profile_dir / "hook-error.txt").read_text()
            )
        self.client = docker.DockerClient(base_url=self.engine.host)

    def close(self) -> None:
        """Stop the engine first (its containers' Unmounts reach pfs), then pfs."""
        self.plugin.close()
        if self.client is not None:
            self.client.close()
        self.engine.stop()
        self.node.cleanup()

    def close_and_remove(self, root: Path) -> None:
        """``close``, then delete the run's folder unless the pool is still mounted."""
        self.close()
        if not is_mountpoint(self.node.pool_root):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"the pool is still mounted: left {root} in place")

    def name(self, stem: str) -> str:
        self._names += 1
        return f"{stem}{self._names}"

    # pfs

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.api_url + path, timeout=120, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def write(self, repo: str, files: dict[str, bytes]) -> float:
        """Write ``files`` into ``repo``'s master through a plugin Mount and commit them
        by the Unmount, as a container would; when the commit was made (epoch)."""
        name = f"{self.node.driver_name}/{repo}/master"
        mount_id = self.name("m")
        self.plugin.close()  # the daemon drops a connection idle for minutes (a long job)
        reply = self.plugin.call("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
        if reply.get("Err"):
            raise RuntimeError(f"Mount {name}: {reply['Err']}")
        for rel, data in files.items():
            (Path(reply["Mountpoint"]) / rel).write_bytes(data)
        reply = self.plugin.call("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
        if reply.get("Err"):
            raise RuntimeError(f"Unmount {name}: {reply['Err']}")
        return time.time()

    def input_repo(self, files: dict[str, bytes]) -> str:
        repo = self.name("in")
        self.node.cli("repo", "create", repo)
        self.write(repo, files)
        return repo

    def create_pipeline(self, repo: str, parallelism: int) -> tuple[str, float]:
        """POST a new pipeline over ``repo``; its name and when the request was sent."""
        name = self.name("pipe")
        spec = {
            "name": name,
            "input": {"repo": repo, "glob": "/*", "name": INPUT},
            "transform": {"image": self.image, "cmd": ["sh", "-c", SCRIPT]},
            "parallelism": parallelism,
        }
        sent = time.time()
        self.api("POST", "/v1/pipelines", data=json.dumps(spec).encode())
        return name, sent

    def wait_job(self, pipeline: str, index: int, datums: int) -> dict[str, Any]:
        """Wait for the ``index``-th job (0-based) of ``pipeline`` to end; its record."""
        deadline = time.monotonic() + JOB_WAIT_BASE + JOB_WAIT_PER_DATUM * datums
        job_id = None
        while time.monotonic() < deadline:
            if job_id is None:
                jobs = self.api("GET", "/v1/jobs", params={"pipeline": pipeline})["jobs"]
                if len(jobs) > index:
                    job_id = jobs[index]["id"]
            if job_id is not None:
                job: dict[str, Any] = self.api("GET", f"/v1/jobs/{job_id}")
                if job["state"] in ("success", "failure", "killed"):
                    if job["state"] != "success":
                        raise RuntimeError(f"job {job_id} of {pipeline}: {job['state']}: {job}")
                    return job
            time.sleep(POLL)
        raise RuntimeError(
            f"{pipeline}: job {index} did not end in time\n{self.node.log()[-3000:]}"
        )

    def output_dir(self, job: dict[str, Any]) -> Path:
        repo, commit = job["output"].split("@", 1)
        return Path(self.node.pool_root) / "repos" / repo / "commits" / commit

    def profile(self, job_id: str) -> dict[str, Any] | None:
        """What the timing hook recorded for a job (it writes right after the job)."""
        if self.profile_dir is None:
            return None
        path = self.profile_dir / f"{job_id}.json"
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        found: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
        return found

    def pfs_job(self, files: dict[str, bytes], parallelism: int) -> dict[str, Any]:
        """A fresh repo of ``files`` and a fresh pipeline over it; the job's times."""
        repo = self.input_repo(files)
        sync_all()
        pipeline, sent = self.create_pipeline(repo, parallelism)
        job = self.wait_job(pipeline, 0, len(files))
        check_job(job, len(files), 0)
        check_outputs(self.output_dir(job), files)
        created, started, finished = (epoch(job[k]) for k in ("created", "started", "finished"))
        return {
            "job": job["id"],
            "seconds": finished - created,
            "from_create": finished - sent,
            "queued": started - created,
            "containers": sum(d["seconds"] for d in job["datums"]),
            "profile": self.profile(job["id"]),
        }

    # by hand

    def by_hand(
        self, files: dict[str, bytes], parallelism: int, cli: bool = False
    ) -> dict[str, Any]:
        """The same containers with plain bind mounts (the SDK calls pfs makes, or
        ``docker run --rm``), then one ``cp`` of their outputs into one folder; seconds,
        and the SDK calls' times."""
        base = self.node.pool_root / "byhand" / self.name("run")
        inputs, final = base / "in", base / "final"
        inputs.mkdir(parents=True)
        final.mkdir()
        for rel, data in files.items():
            (inputs / rel).write_bytes(data)
        outs = [base / f"out-{rel}" for rel in files]
        for out in outs:
            out.mkdir()
        steps: dict[str, list[float]] = {}
        lock = threading.Lock()

        def one(rel: str, out: Path) -> None:
            if cli:
                self._docker_run(inputs, rel, out)
            else:
                self.sdk_run(inputs, rel, out, steps, lock)

        sync_all()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(one, files, outs))
        subprocess.run(
            ["cp", "-a", "--reflink=auto", *(f"{out}/." for out in outs), f"{final}/"],
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - start
        check_outputs(final, files)
        return {"seconds": seconds, "steps": steps}

    def sdk_run(
        self,
        inputs: Path | str,
        rel: str,
        out: Path,
        steps: dict[str, list[float]],
        lock: Any,
    ) -> None:
        """What ``containers.run(detach=True)``, wait, logs and remove do, timed apart.
        ``inputs`` is a folder to bind-mount, or a volume name of this daemon's driver
        (mounted as the runner mounts it: read-only, the driver named)."""
        mounts = [DockerMount("/pfs/out", str(out), type="bind")]
        if isinstance(inputs, Path):
            mounts.append(DockerMount(f"/pfs/in/{INPUT}", str(inputs), type="bind", read_only=True))
        else:
            mounts.append(
                DockerMount(
                    f"/pfs/in/{INPUT}",
                    inputs,
                    type="volume",
                    read_only=True,
                    driver_config=DriverConfig(self.node.driver_name),
                )
            )

        def timed_step(label: str, action: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            try:
                return action()
            finally:
                with lock:
                    entry = steps.setdefault(label, [0, 0.0])
                    entry[0] += 1
                    entry[1] += time.perf_counter() - start

        container = timed_step(
            "docker: create",
            lambda: self.client.containers.create(
                self.image,
                command=["sh", "-c", SCRIPT],
                environment={DATUM_ENV: rel},
                mounts=mounts,
                network_mode="none",
            ),
        )
        try:
            timed_step("docker: start", container.start)
            code = timed_step("docker: wait", lambda: container.wait(timeout=CONTAINER_TIMEOUT))[
                "StatusCode"
            ]
            output = timed_step("docker: logs", lambda: container.logs(stdout=True, stderr=True))
        finally:
            timed_step("docker: remove", lambda: container.remove(force=True))
        if code != 0:
            raise RuntimeError(f"by-hand container for {rel} exited {code}: {output!r}")

    def _docker_run(self, inputs: Path, rel: str, out: Path) -> None:
        self.engine.run(
            "-v", f"{inputs}:/pfs/in/{INPUT}:ro",
            "-v", f"{out}:/pfs/out",
            "-e", f"{DATUM_ENV}={rel}",
            self.image, "sh", "-c", SCRIPT,
            timeout=CONTAINER_TIMEOUT,
        )  # fmt: skip


def check_job(job: dict[str, Any], ran: int, reused: int) -> None:
    states = [d["state"] for d in job["datums"]]
    if states.count("success") != ran or states.count("reused") != reused:
        raise RuntimeError(
            f"job {job['id']}: expected {ran} run and {reused} reused datums, got "
            f"{states.count('success')} run, {states.count('reused')} reused of {len(states)}"
        )


def check_outputs(folder: Path, files: dict[str, bytes]) -> None:
    """Every input file's ``NAME.n`` holds its size, and nothing else is there."""
    found = sorted(p.name for p in folder.iterdir())
    wanted = sorted(f"{rel}.n" for rel in files)
    if found != wanted:
        raise RuntimeError(f"{folder}: {len(found)} outputs, expected {len(wanted)}")
    for rel, data in files.items():
        if (folder / f"{rel}.n").read_text().strip() != str(len(data)):
            raise RuntimeError(f"{folder}/{rel}.n does not hold {len(data)}")


def overhead(bench: Bench, mode: str) -> list[dict[str, Any]]:
    """pfs jobs against the same containers by hand; pfs goes first on even repetitions."""
    print("  warm-up: one pfs job and one by-hand run (untimed) ...", flush=True)
    bench.pfs_job(contents(1), 1)
    bench.by_hand(contents(1), 1)
    rows = []
    plan: list[tuple[int, int, int]] = [(n, 1, reps) for n, reps in OVERHEAD[mode]]
    plan.append((PARALLEL_FILES[mode], 2, 1))
    for files_count, parallelism, reps in plan:
        row: dict[str, Any] = {
            "files": files_count,
            "parallelism": parallelism,
            "pfs": [],
            "by_hand": [],
            "by_hand_cli": [],
        }
        for rep in range(reps):
            print(
                f"  overhead: {files_count} datum(s), parallelism {parallelism}, "
                f"rep {rep + 1}/{reps} ...",
                flush=True,
            )
            files = contents(files_count)
            runs: list[tuple[str, Callable[[], Any]]] = [
                ("pfs", partial(bench.pfs_job, files, parallelism)),
                ("by_hand", partial(bench.by_hand, files, parallelism)),
            ]
            if files_count == 1:
                runs.append(("by_hand_cli", partial(bench.by_hand, files, parallelism, cli=True)))
            for kind, action in runs if rep % 2 == 0 else list(reversed(runs)):
                row[kind].append(action())
        rows.append(row)
    return rows


def incremental(bench: Bench, mode: str) -> dict[str, Any]:
    """A full job over INCR_FILES files, then jobs after one file changed each time."""
    count = INCR_FILES[mode]
    print(f"  incremental: full job over {count:,} files ...", flush=True)
    files = contents(count)
    repo = bench.input_repo(files)
    sync_all()
    pipeline, _sent = bench.create_pipeline(repo, 1)
    full = bench.wait_job(pipeline, 0, count)
    check_job(full, count, 0)
    check_outputs(bench.output_dir(full), files)
    result: dict[str, Any] = {
        "files": count,
        "full": job_times(full) | {"profile": bench.profile(full["id"])},
        "changes": [],
    }
    for change in range(INCR_CHANGES[mode]):
        print(f"  incremental: change {change + 1}/{INCR_CHANGES[mode]} ...", flush=True)
        rel = sorted(files)[(change * 337 + 11) % count]
        files[rel] = os.urandom(CHANGED_SIZE + change)
        committed = bench.write(repo, {rel: files[rel]})
        job = bench.wait_job(pipeline, change + 1, count)
        check_job(job, 1, count - 1)
        ran = [d for d in job["datums"] if d["state"] == "success"]
        if ran[0]["paths"] != {INPUT: rel}:
            raise RuntimeError(f"job {job['id']} ran {ran[0]['paths']}, not {rel}")
        check_outputs(bench.output_dir(job), files)
        times = job_times(job)
        times["trigger_delay"] = epoch(job["created"]) - committed
        times["profile"] = bench.profile(job["id"])
        result["changes"].append(times)
    return result


def job_times(job: dict[str, Any]) -> dict[str, Any]:
    created, started, finished = (epoch(job[k]) for k in ("created", "started", "finished"))
    return {
        "job": job["id"],
        "seconds": finished - created,
        "queued": started - created,
        "containers": sum(d["seconds"] for d in job["datums"] if d["state"] == "success"),
    }


def seconds_of(samples: list[dict[str, Any]]) -> float:
    return median([s["seconds"] for s in samples])


def median_sample(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample whose time is the median (the lower middle one of an even count)."""
    ordered = sorted(samples, key=lambda s: s["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def report_overhead(rows: list[dict[str, Any]]) -> dict[str, Any]:
    print("\njob overhead: pfs job (finished - created) vs the same containers by hand; medians")
    header = [
        "datums", "par.", "reps", "pfs job", "pfs from create", "by hand (SDK)",
        "pfs / by hand", "by hand (docker run)",
    ]  # fmt: skip
    lines = []
    summary: dict[str, Any] = {}
    for row in rows:
        pfs = seconds_of(row["pfs"])
        from_create = median([s["from_create"] for s in row["pfs"]])
        hand = seconds_of(row["by_hand"])
        cli = fmt_seconds(seconds_of(row["by_hand_cli"])) if row["by_hand_cli"] else "-"
        key = f"{row['files']}x{row['parallelism']}"
        summary[key] = {"pfs_s": pfs, "by_hand_s": hand, "ratio": pfs / hand}
        lines.append(
            [
                f"{row['files']:,}", str(row["parallelism"]), str(len(row["pfs"])),
                fmt_seconds(pfs), fmt_seconds(from_create), fmt_seconds(hand),
                fmt_ratio(pfs / hand), cli,
            ]
        )  # fmt: skip
    print(table(header, lines))
    print("each sample, pfs / by hand:")
    for row in rows:
        pairs = zip(row["pfs"], row["by_hand"], strict=True)
        shown = ", ".join(
            f"{fmt_seconds(p['seconds'])} / {fmt_seconds(h['seconds'])}" for p, h in pairs
        )
        print(f"  {row['files']:,} x par. {row['parallelism']}: {shown}")
    for row in rows:
        if row["parallelism"] == 1:
            compare_steps(row)
    return summary


def compare_steps(row: dict[str, Any]) -> None:
    """Per datum, pfs's steps (the timing hook, median job) against the by-hand run's."""
    profile = median_sample(row["pfs"])["profile"]
    hand = median_sample(row["by_hand"])
    if profile is None:
        return
    count = row["files"]
    pfs_steps, hand_steps = profile["steps"], hand["steps"]
    print(
        f"\nper datum, {count:,} datum(s): the median pfs job ({fmt_seconds(profile['run_job_s'])})"
        f" against the median by-hand run ({fmt_seconds(hand['seconds'])})"
    )
    rows = []
    pfs_rest = profile["run_job_s"]
    hand_rest = hand["seconds"]
    for label in ("docker: create", "docker: start", "docker: wait", "docker: logs",
                  "docker: remove"):  # fmt: skip
        mine = pfs_steps.get(label, [0, 0.0])[1]
        theirs = hand_steps.get(label, [0, 0.0])[1]
        pfs_rest -= mine
        hand_rest -= theirs
        rows.append([label, fmt_seconds(mine / count), fmt_seconds(theirs / count)])
    rows.append(["everything else", fmt_seconds(pfs_rest / count), fmt_seconds(hand_rest / count)])
    rows.append(
        ["total", fmt_seconds(profile["run_job_s"] / count), fmt_seconds(hand["seconds"] / count)]
    )
    print(table(["", "pfs", "by hand"], rows))
    print("(by hand, everything else is the one cp of all outputs; pfs's is below)")


def report_incremental(result: dict[str, Any]) -> dict[str, Any]:
    count = result["files"]
    full = result["full"]["seconds"]
    incr = median([c["seconds"] for c in result["changes"]])
    print(
        f"\nincremental: {count:,} files, glob /*, parallelism 1; then one file changed "
        f"({len(result['changes'])} time(s), median)"
    )
    rows = [
        [f"full job ({count:,} datums run)", fmt_seconds(full),
         fmt_seconds(result["full"]["containers"]), "-"],
        [f"after one change (1 run, {count - 1:,} reused)", fmt_seconds(incr),
         fmt_seconds(median([c["containers"] for c in result["changes"]])),
         fmt_seconds(median([c["trigger_delay"] for c in result["changes"]]))],
    ]  # fmt: skip
    print(table(["", "job", "containers", "commit -> job created"], rows))
    print("(commit -> job created: a commit wakes the trigger loop; not in the job time)")
    return {"full_s": full, "incremental_s": incr, "ratio": full / incr}


STEP_ORDER = (
    "job record: list",
    "job record: save",
    "plan: list input entries",
    "plan: changed datums (diff)",
    "datum (all of _run_datum)",
    "btrfs: subvolume create",
    "docker: create",
    "docker: start",
    "docker: wait",
    "docker: logs",
    "docker: remove",
    "plugin: Get (from dockerd)",
    "plugin: Path (from dockerd)",
    "plugin: Mount (from dockerd)",
    "plugin: Unmount (from dockerd)",
    "btrfs: snapshot",
    "btrfs: subvolume delete",
    "combine (all of _combine)",
    "combine: list a datum's files",
    "combine: cp of one datum",
    "combine: commit",
)
INDENTED = ("btrfs: s", "docker:", "plugin:", "combine: ")


def report_profile(title: str, profile: dict[str, Any] | None) -> None:
    if profile is None:
        return
    total = profile["run_job_s"]
    print(f"\n{title}: run_job {fmt_seconds(total)}")
    rows = []
    steps = profile["steps"]
    for label in [*STEP_ORDER, *sorted(set(steps) - set(STEP_ORDER))]:
        if label not in steps:
            continue
        calls, seconds, slowest = steps[label]
        shown = ("  " + label) if label.startswith(INDENTED) else label
        rows.append(
            [
                shown, f"{calls:,}", fmt_seconds(seconds), fmt_seconds(seconds / calls),
                fmt_seconds(slowest), f"{100 * seconds / total:.1f}%",
            ]
        )  # fmt: skip
    print(table(["step", "calls", "total", "per call", "slowest", "of job"], rows))
    stall = steps.get("docker: create", [0, 0.0, 0.0])[2]
    if stall > STALL:
        print(
            f"NOTE: one docker create took {fmt_seconds(stall)}. A new input volume name "
            "comes without a driver, so dockerd asks every volume plugin on the host about "
            "it (Get); a plugin socket that does not answer (another pfs paused or killed "
            "by a test) costs that wait."
        )


def complaints(node: PfsNode) -> list[str]:
    return [
        line
        for line in node.log().splitlines()
        if " WARNING " in line or " ERROR " in line or "Traceback" in line
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer files, one repetition")
    parser.add_argument("--no-profile", action="store_true", help="no timing hook in pfs")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    require_root()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="pfsbench-pipe-"))
    bench = Bench(root, profile=not args.no_profile)
    try:
        bench.start()
        notes = machine_notes(root)
        print("pipelines: pfs jobs vs the same containers by hand (private dockerd, busybox)")
        print_notes(notes)
        print(f"transform: sh -c '{SCRIPT}'; inputs of {FILE_SIZE} B files")
        rows = overhead(bench, mode)
        incr = incremental(bench, mode)
        over = report_overhead(rows)
        inc = report_incremental(incr)
        for row in rows:
            if row["parallelism"] == 1:
                report_profile(
                    f"where the time goes: the median job of {row['files']:,} datum(s)",
                    median_sample(row["pfs"])["profile"],
                )
        report_profile(
            f"where the time goes: the full job of {incr['files']:,} datums",
            incr["full"]["profile"],
        )
        report_profile(
            f"where the time goes: the job after one change ({incr['files'] - 1:,} reused)",
            median_sample(incr["changes"])["profile"],
        )
        summary = {"overhead": over, "incremental": inc}
        print()
        for key, values in over.items():
            if key.endswith("x1"):
                print(
                    f"overhead, {key.split('x')[0]} datum(s): pfs / by hand "
                    f"{fmt_ratio(values['ratio'])} (target <= {OVERHEAD_TARGET})  "
                    f"{verdict(values['ratio'] <= OVERHEAD_TARGET)}"
                )
                values["met"] = values["ratio"] <= OVERHEAD_TARGET
        inc["met"] = inc["ratio"] >= INCREMENTAL_TARGET
        print(
            f"incremental: full / one change {fmt_ratio(inc['ratio'])} "
            f"(target >= {INCREMENTAL_TARGET:.0f}x)  {verdict(inc['met'])}"
        )
        logged = complaints(bench.node)
        print(f"daemon warnings and errors: {len(logged)}")
        for line in logged[:LOG_LINES_SHOWN]:
            print(f"  {line}")
        elapsed = time.monotonic() - started
        notes["load average at end"] = load_average()
        print(
            f"\ntotal run time {elapsed:.0f} s; load average at end: {notes['load average at end']}"
        )
        path = write_results(
            "pipeline",
            {
                "machine": notes,
                "mode": mode,
                "overhead": rows,
                "incremental": incr,
                "targets": summary,
                "daemon_complaints": logged,
                "elapsed_s": elapsed,
            },
        )
        print(f"results: {path}")
    finally:
        bench.close_and_remove(root)


if __name__ == "__main__":
    main()
