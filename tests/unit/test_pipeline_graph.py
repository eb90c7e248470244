"""The pipeline graph: second writers and cycles found, downstream in order."""

from __future__ import annotations

from pfs_volume.pipelines.graph import downstream, topological, writer_problems
from pfs_volume.pipelines.spec import PipelineSpec, validate


def spec(name: str, *inputs: str, output: str | None = None) -> PipelineSpec:
    items = [{"repo": repo, "name": f"in{index}"} for index, repo in enumerate(inputs)]
    raw = {
        "name": name,
        "input": items[0] if len(items) == 1 else {"cross": items},
        "transform": {"image": "x", "cmd": ["true"]},
        "output": {"repo": output or name},
    }
    return validate(raw)


def test_a_second_writer_and_a_cycle_are_both_reported_with_paths() -> None:
    others = [spec("b", "a"), spec("c", "b"), spec("w", "a", output="out")]
    problems = writer_problems(
        "x", ("out", "master"), [("input.cross[0]", ("c", "master"))], others
    )
    assert problems == [
        (
            "output",
            "pipeline w writes out/master already (a branch has one writer); give this "
            "pipeline another output",
        ),
    ]
    looped = writer_problems("a2", ("a", "master"), [("input", ("c", "master"))], others)
    assert len(looped) == 1 and looped[0][0] == "input"
    assert "a cycle (a2 -> b -> c -> a2)" in looped[0][1]


def test_a_pipeline_replacing_itself_is_no_second_writer() -> None:
    assert (
        writer_problems("b", ("b", "master"), [("input", ("a", "master"))], [spec("b", "a")]) == []
    )


def test_downstream_lists_every_reader_upstream_first() -> None:
    specs = [spec("d", "b", "c"), spec("c", "a", "b"), spec("b", "a"), spec("z", "other")]
    assert [s.name for s in downstream(specs, ("a", "master"))] == ["b", "c", "d"]
    assert [s.name for s in downstream(specs, ("b", "master"))] == ["c", "d"]
    assert downstream(specs, ("nothing", "master")) == []
    assert [s.name for s in topological(specs)] == ["b", "z", "c", "d"]  # by level, then name
