"""Three pipelines triggered by one commit, against the same containers by hand; and the
time from a put to the first container of the job it triggers.

A private Docker engine and a real ``pfs serve --max-jobs 3`` (``pipeline_bench.Bench``),
the transform and inputs of ``pipeline_bench.py`` (``glob: /*`` over 1 KiB files, input
named ``text``):

    concurrent    three pipelines, each of parallelism P, created over an empty repo;
                  one commit of N files (a plugin Mount and Unmount) triggers all three.
                  Timed from that commit (its record's time) to the last job's end.
                  By hand: the same 3 x N containers through the docker SDK (create,
                  start, wait, logs, remove) on a pool of 3 x P threads, the commit's
                  folder bind-mounted read-only at /pfs/in/text and an output folder of
                  their own, then one ``cp`` per pipeline of its outputs into one folder.
    latency       ``pfs put`` of one file into a repo one pipeline reads; from the put's
                  return to the first ``start`` event (docker events) of a container
                  labelled with the job's id.

Targets: pfs / by hand <= 1.2; put to first container p95 <= 1.5 s. Run as root from
the repo root:

    PYTHONPATH=/work/main .venv/bin/python bench/pipelines_concurrent.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import (
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
from bench.pipeline_bench import (
    FILE_SIZE,
    SCRIPT,
    STEP_ORDER,
    Bench,
    check_job,
    check_outputs,
    complaints,
    contents,
    epoch,
    sync_all,
)
from tests.pfs_node import PFS

PIPELINES = 3
MAX_JOBS = 3
PARALLELISM = 2
"""Each pipeline's; by hand runs PIPELINES x PARALLELISM containers at once."""
FILES = {"full": 100, "quick": 20}
REPS = {"full": 3, "quick": 1}
LATENCY_RUNS = {"full": 20, "quick": 5}
RATIO_TARGET = 1.2
LATENCY_TARGET = 1.5
"""Seconds, p95 of put to first container."""
EVENT_MARGIN = 5.0
"""Seconds of docker events read before the first moment of interest."""
EVENT_SETTLE = 0.5
"""Seconds the event reader keeps reading after the jobs ended (the last exits' events)."""
EVENT_CLOSE_WAIT = 10.0
HOOK_DUMP_WAIT = 0.6
"""Seconds for the timing hook to write its totals (every 0.25 s) before they are read."""
PUT_TIMEOUT = 60.0
JOB_LABEL = "pfs.job"
LOG_LINES_SHOWN = 10


def cumulative(bench: Bench) -> dict[str, list[float]]:
    """The timing hook's totals over every call so far ({} without the hook)."""
    if bench.profile_dir is None:
        return {}
    time.sleep(HOOK_DUMP_WAIT)
    path = bench.profile_dir / "cumulative.json"
    if not path.exists():
        return {}
    steps: dict[str, list[float]] = json.loads(path.read_text())["steps"]
    return steps


def steps_between(
    before: dict[str, list[float]], after: dict[str, list[float]]
) -> dict[str, list[float]]:
    """What the hook added up between two readings: label -> [calls, seconds]."""
    found = {}
    for label, (calls, seconds, *_rest) in after.items():
        was = before.get(label, [0, 0.0])
        if calls - was[0]:
            found[label] = [calls - was[0], seconds - was[1]]
    return found


def container_events(
    bench: Bench, since: float, event: str, label: str
) -> list[tuple[float, dict[str, str]]]:
    """Docker ``event``s of containers carrying ``label`` from ``since`` to now: (epoch
    seconds, the container's attributes), oldest first."""
    until = time.time()
    stream = bench.client.events(
        since=since,
        until=until,
        filters={"type": "container", "event": event, "label": label},
        decode=True,
    )
    found = []
    for item in stream:
        found.append((item["timeNano"] / 1e9, item["Actor"]["Attributes"]))
    return sorted(found, key=lambda pair: pair[0])


class EventRecorder:
    """Docker events of containers carrying a label, read as they happen: an engine keeps
    only its latest 256 events for a later ``since`` query, fewer than 300 containers make.
    """

    def __init__(self, bench: Bench, label: str) -> None:
        self.events: list[tuple[float, str, dict[str, str]]] = []
        self._stream = bench.client.events(
            filters={"type": "container", "label": label, "event": ["create", "start", "die"]},
            decode=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._stream:
                attrs = item["Actor"]["Attributes"]
                self.events.append((item["timeNano"] / 1e9, item["Action"], attrs))
        except Exception:  # the stream ends so when close() shuts its socket
            pass

    def close(self) -> None:
        """Stop reading (the events so far stay in ``events``)."""
        time.sleep(EVENT_SETTLE)
        self._stream.close()
        self._thread.join(timeout=EVENT_CLOSE_WAIT)

    def times(self, action: str, job_id: str) -> list[float]:
        """When containers of ``job_id`` had the event ``action``."""
        return [
            t for t, kind, attrs in self.events if kind == action and attrs.get(JOB_LABEL) == job_id
        ]


def head_commit(bench: Bench, repo: str) -> dict[str, Any]:
    found: dict[str, Any] = bench.api("GET", f"/v1/repos/{repo}/commits/master")
    return found


# concurrent


def pfs_concurrent(bench: Bench, files: dict[str, bytes], parallelism: int) -> dict[str, Any]:
    """Three fresh pipelines over a fresh empty repo; one commit of ``files``."""
    repo = bench.name("in")
    bench.node.cli("repo", "create", repo)
    pipelines = [bench.create_pipeline(repo, parallelism)[0] for _ in range(PIPELINES)]
    sync_all()
    before = cumulative(bench)
    recorder = EventRecorder(bench, JOB_LABEL)
    try:
        returned = bench.write(repo, files)
        committed = epoch(head_commit(bench, repo)["created"])
        jobs = [bench.wait_job(p, 0, PIPELINES * len(files)) for p in pipelines]
    finally:
        recorder.close()
    for job in jobs:
        check_job(job, len(files), 0)
        check_outputs(bench.output_dir(job), files)
        bench.profile(job["id"])  # the hook has written its totals once this exists
    steps = steps_between(before, cumulative(bench))
    phases = []
    for job in jobs:
        made = recorder.times("create", job["id"])
        mine = recorder.times("start", job["id"])
        ended = recorder.times("die", job["id"])
        if not len(made) == len(mine) == len(ended) == len(files):
            raise RuntimeError(
                f"job {job['id']}: docker events for {len(made)} creates, {len(mine)} starts, "
                f"{len(ended)} exits; expected {len(files)} each"
            )
        created, started, finished = (epoch(job[k]) for k in ("created", "started", "finished"))
        phases.append(
            {
                "job": job["id"],
                "commit_to_created": created - committed,
                "created_to_started": started - created,
                "started_to_first_create": min(made) - started,
                "first_create_to_first_start": min(mine) - min(made),
                "containers": max(ended) - min(mine),
                "last_container_to_finished": finished - max(ended),
                "finished_after_commit": finished - committed,
            }
        )
    last = max(epoch(j["finished"]) for j in jobs)
    return {
        "seconds": last - committed,
        "from_unmount_return": last - returned,
        "commit_to_unmount_return": returned - committed,
        "jobs": phases,
        "steps": steps,
    }


def by_hand_concurrent(
    bench: Bench, files: dict[str, bytes], parallelism: int, volume: bool = False
) -> dict[str, Any]:
    """The same containers as three pipelines' jobs, ``PIPELINES x parallelism`` at once,
    on a committed copy of ``files``: its commit folder bind-mounted read-only, or with
    ``volume`` the pfs volume ``DRIVER/REPO@COMMIT`` as the runner mounts it."""
    source = bench.input_repo(files)
    commit = head_commit(bench, source)["id"]
    inputs: Path | str = Path(bench.node.pool_root) / "repos" / source / "commits" / commit
    if volume:
        inputs = f"{bench.node.driver_name}/{source}@{commit}"
    base = bench.node.pool_root / "byhand" / bench.name("conc")
    tasks: list[tuple[str, Path]] = []
    finals = []
    for index in range(PIPELINES):
        folder = base / f"p{index}"
        finals.append((folder / "final", [folder / f"out-{rel}" for rel in files]))
        for rel, out in zip(files, finals[-1][1], strict=True):
            out.mkdir(parents=True)
            tasks.append((rel, out))
        (folder / "final").mkdir()
    steps: dict[str, list[float]] = {}
    lock = threading.Lock()
    sync_all()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PIPELINES * parallelism) as pool:
        list(pool.map(lambda task: bench.sdk_run(inputs, task[0], task[1], steps, lock), tasks))
    for final, outs in finals:
        subprocess.run(
            ["cp", "-a", "--reflink=auto", *(f"{out}/." for out in outs), f"{final}/"],
            check=True,
            capture_output=True,
        )
    seconds = time.perf_counter() - start
    for final, _outs in finals:
        check_outputs(final, files)
    if isinstance(inputs, str):
        bench.client.volumes.get(inputs).remove()  # as the runner forgets a job's volumes
    return {"seconds": seconds, "steps": steps}


def concurrent(bench: Bench, mode: str, with_volume: bool) -> dict[str, Any]:
    """REPS rounds of pfs and by hand (and by hand on the pfs volume), taking turns going
    first."""
    runs: dict[str, Callable[[Bench, dict[str, bytes], int], dict[str, Any]]] = {
        "pfs": pfs_concurrent,
        "by_hand": by_hand_concurrent,
    }
    if with_volume:
        runs["by_hand_volume"] = partial(by_hand_concurrent, volume=True)
    result: dict[str, Any] = {"files": FILES[mode], "parallelism": PARALLELISM}
    result |= {kind: [] for kind in runs}
    for rep in range(REPS[mode]):
        files = contents(FILES[mode])
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for kind in order:
            print(f"  concurrent: {kind}, rep {rep + 1}/{REPS[mode]} ...", flush=True)
            result[kind].append(runs[kind](bench, files, PARALLELISM))
    return result


# latency


def latency(bench: Bench, mode: str) -> list[dict[str, Any]]:
    """``pfs put`` of one new file at a time into a repo one pipeline reads."""
    files = contents(1)
    repo = bench.input_repo(files)
    pipeline, _sent = bench.create_pipeline(repo, 1)
    bench.wait_job(pipeline, 0, 1)
    samples = []
    runs = LATENCY_RUNS[mode]
    print(f"  latency: {runs} puts ...", flush=True)
    for index in range(runs):
        rel = f"put{index:03}"
        files[rel] = contents(1)["f00000"]
        sent = time.time()
        done = subprocess.run(
            [PFS, "--api", str(bench.node.api_socket), "put", f"{repo}/master", rel, "--json"],
            input=files[rel],
            capture_output=True,
            timeout=PUT_TIMEOUT,
            check=False,
        )
        returned = time.time()
        if done.returncode != 0:
            raise RuntimeError(f"pfs put failed: {done.stderr.decode(errors='replace')}")
        commit = json.loads(done.stdout)
        job = bench.wait_job(pipeline, index + 1, 1)
        check_job(job, 1, len(files) - 1)
        check_outputs(bench.output_dir(job), files)
        if job["inputs"][next(iter(job["inputs"]))] != f"{repo}@{commit['id']}":
            raise RuntimeError(f"job {job['id']} ran {job['inputs']}, not {commit['id']}")
        starts = container_events(bench, sent - EVENT_MARGIN, "start", f"{JOB_LABEL}={job['id']}")
        if not starts:
            raise RuntimeError(f"no container start event for job {job['id']}")
        first = starts[0][0]
        created, started = epoch(job["created"]), epoch(job["started"])
        samples.append(
            {
                "job": job["id"],
                "put": returned - sent,
                "seconds": first - returned,
                "from_put_start": first - sent,
                "commit_to_put_return": returned - epoch(commit["created"]),
                "return_to_created": created - returned,
                "created_to_started": started - created,
                "started_to_first_container": first - started,
            }
        )
    return samples


# reports


def percentile(samples: list[float], share: float) -> float:
    """The ``share`` quantile (0..1), interpolated as ``statistics.quantiles`` does."""
    if len(samples) == 1:
        return samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[round(share * 100) - 1]


def report_concurrent(result: dict[str, Any]) -> dict[str, Any]:
    pfs = [s["seconds"] for s in result["pfs"]]
    hand = [s["seconds"] for s in result["by_hand"]]
    ratio = median(pfs) / median(hand)
    count, par = result["files"], result["parallelism"]
    print(
        f"\nconcurrent: {PIPELINES} pipelines x {count} datums, parallelism {par} each, "
        f"--max-jobs {MAX_JOBS}; by hand {PIPELINES * par} threads; medians of {len(pfs)}"
    )
    rows = [
        [
            f"{PIPELINES} x {count} datums",
            fmt_seconds(median(pfs)),
            fmt_seconds(median([s["from_unmount_return"] for s in result["pfs"]])),
            fmt_seconds(median(hand)),
            fmt_ratio(ratio),
            f"<= {RATIO_TARGET}",
            verdict(ratio <= RATIO_TARGET),
        ]
    ]
    print(
        table(
            ["", "pfs (commit -> last job)", "from Unmount return", "by hand (SDK)",
             "pfs / by hand", "target", ""],
            rows,
        )
    )  # fmt: skip
    shown = ", ".join(
        f"{fmt_seconds(p)} / {fmt_seconds(h)}" for p, h in zip(pfs, hand, strict=True)
    )
    print(f"each sample, pfs / by hand: {shown}")
    if result.get("by_hand_volume"):
        vol = [s["seconds"] for s in result["by_hand_volume"]]
        print(
            f"by hand with the input as the pfs volume: {fmt_seconds(median(vol))} "
            f"({', '.join(fmt_seconds(v) for v in vol)}); pfs / that "
            f"{fmt_ratio(median(pfs) / median(vol))}, that / by hand (bind) "
            f"{fmt_ratio(median(vol) / median(hand))}"
        )
    phases = [phase for sample in result["pfs"] for phase in sample["jobs"]]
    print("\nwhere each pfs job's wall time goes (docker events and job records; medians):")
    labels = (
        ("commit -> job created (trigger)", "commit_to_created"),
        ("created -> started (slot)", "created_to_started"),
        ("started -> first container created", "started_to_first_create"),
        ("first container created -> first started", "first_create_to_first_start"),
        ("first container start -> last exit", "containers"),
        ("last exit -> job finished (combine, commit)", "last_container_to_finished"),
        ("commit -> job finished", "finished_after_commit"),
    )
    print(
        table(
            ["phase", "median", "max"],
            [
                [label, fmt_seconds(median([p[key] for p in phases])),
                 fmt_seconds(max(p[key] for p in phases))]
                for label, key in labels
            ],
        )
    )  # fmt: skip
    compare_concurrent_steps(result)
    return {"pfs_s": median(pfs), "by_hand_s": median(hand), "ratio": ratio}


def compare_concurrent_steps(result: dict[str, Any]) -> None:
    """Thread-seconds per datum, pfs's steps (all three jobs, the median round) against
    the by-hand run's."""
    ordered = sorted(result["pfs"], key=lambda s: s["seconds"])
    sample = ordered[(len(ordered) - 1) // 2]
    hand = sorted(result["by_hand"], key=lambda s: s["seconds"])[(len(ordered) - 1) // 2]
    vols = sorted(result.get("by_hand_volume", []), key=lambda s: s["seconds"])
    vol = vols[(len(vols) - 1) // 2]["steps"] if vols else {}
    if not sample["steps"]:
        return
    datums = PIPELINES * result["files"]
    print(
        f"\nthread-seconds per datum over the {datums} datums of the median round "
        "(calls run at once, so the totals exceed the wall time)"
    )
    rows = []
    for label in [*STEP_ORDER, *sorted(set(sample["steps"]) - set(STEP_ORDER))]:
        if label not in sample["steps"]:
            continue
        calls, seconds = sample["steps"][label]
        theirs = hand["steps"].get(label)
        rows.append(
            [
                label, f"{calls:,}", fmt_seconds(seconds), fmt_seconds(seconds / datums),
                fmt_seconds(theirs[1] / datums) if theirs else "-",
                fmt_seconds(vol[label][1] / datums) if label in vol else "-",
            ]
        )  # fmt: skip
    print(
        table(
            ["step", "calls", "total", "pfs per datum", "by hand per datum",
             "by hand, pfs volume"],
            rows,
        )
    )  # fmt: skip


def report_latency(samples: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [s["seconds"] for s in samples]
    p50, p95 = percentile(seconds, 0.5), percentile(seconds, 0.95)
    print(
        f"\nlatency: pfs put of one file -> first container start of its job, {len(seconds)} runs"
    )
    rows = [
        [label, fmt_seconds(percentile([s[key] for s in samples], 0.5)),
         fmt_seconds(percentile([s[key] for s in samples], 0.95)),
         fmt_seconds(max(s[key] for s in samples))]
        for label, key in (
            ("pfs put (the CLI process)", "put"),
            ("put returned -> job created", "return_to_created"),
            ("job created -> started", "created_to_started"),
            ("job started -> first container start", "started_to_first_container"),
            ("put returned -> first container start", "seconds"),
            ("put started -> first container start", "from_put_start"),
        )
    ]  # fmt: skip
    print(table(["", "p50", "p95", "max"], rows))
    met = p95 <= LATENCY_TARGET
    return {"p50_s": p50, "p95_s": p95, "max_s": max(seconds), "met": met}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer files and runs")
    parser.add_argument("--no-profile", action="store_true", help="no timing hook in pfs")
    parser.add_argument(
        "--with-volume",
        action="store_true",
        help="also by hand with the input as the pfs volume (pfs's volume apart from its jobs)",
    )
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    require_root()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="pfsbench-conc-"))
    bench = Bench(root, profile=not args.no_profile, args=["--max-jobs", str(MAX_JOBS)])
    try:
        bench.start()
        notes = machine_notes(root)
        print("pipelines at once: pfs jobs vs the same containers by hand; put -> container")
        print_notes(notes)
        print(f"transform: sh -c '{SCRIPT}'; inputs of {FILE_SIZE} B files")
        print("  warm-up: one pfs job and one by-hand run (untimed) ...", flush=True)
        bench.pfs_job(contents(1), 1)
        bench.by_hand(contents(1), 1)
        conc = concurrent(bench, mode, args.with_volume)
        lat = latency(bench, mode)
        conc_summary = report_concurrent(conc)
        lat_summary = report_latency(lat)
        conc_summary["met"] = conc_summary["ratio"] <= RATIO_TARGET
        print(
            f"\nconcurrent: pfs / by hand {fmt_ratio(conc_summary['ratio'])} "
            f"(target <= {RATIO_TARGET})  {verdict(conc_summary['met'])}"
        )
        print(
            f"latency: put -> first container p50 {fmt_seconds(lat_summary['p50_s'])}, p95 "
            f"{fmt_seconds(lat_summary['p95_s'])} (target <= {LATENCY_TARGET} s)  "
            f"{verdict(lat_summary['met'])}"
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
            "pipelines-concurrent",
            {
                "machine": notes,
                "mode": mode,
                "concurrent": conc,
                "latency": lat,
                "targets": {"concurrent": conc_summary, "latency": lat_summary},
                "daemon_complaints": logged,
                "elapsed_s": elapsed,
            },
        )
        print(f"results: {path}")
    finally:
        bench.close_and_remove(root)


if __name__ == "__main__":
    main()
