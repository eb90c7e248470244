"""Attacks on pipelines through what a user controls: the input repos' file names and
the spec (how many datums a cross makes), and a container's output (its log).

Each test is bounded in time and memory: the behaviour before the fix ran the daemon
out of memory, so the hostile step runs in a child process with a memory limit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pfs_volume.pipelines.datums import MAX_DATUMS, TooManyDatums, datums
from pfs_volume.pipelines.spec import InputSpec, OutputSpec, PipelineSpec, Transform

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
        from pfs_volume.pipelines.datums import datums, TooManyDatums
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
