"""The pipeline spec: parsing JSON and YAML, validation that lists every problem, the
canonical form and the fingerprint, as pure functions."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfs_volume.errors import InvalidRequest
from pfs_volume.pipelines.spec import (
    MAX_PROBLEMS,
    MAX_SPEC_BYTES,
    InputSpec,
    OutputSpec,
    PipelineSpec,
    Resources,
    Transform,
    fingerprint,
    parse_duration,
    parse_spec,
    spec_to_json,
    split_glob,
    validate,
)

MINIMAL_YAML = """\
name: edges
input:
  repo: images
  glob: /*
transform:
  image: python:3.12-slim
  cmd: [python, /code/edges.py]
"""

FULL_JSON = """\
{
  "name": "edges",
  "input": {"cross": [
    {"repo": "images", "glob": "/*"},
    {"repo": "models", "branch": "stable", "glob": "/", "name": "model"}
  ]},
  "transform": {
    "image": "python:3.12-slim",
    "cmd": ["python", "/code/edges.py"],
    "env": {"THRESHOLD": "0.5", "MODE": "fast"}
  },
  "output": {"repo": "edges-out", "branch": "results"},
  "parallelism": 4,
  "resources": {"memory": "512M", "cpus": 1.5}
}
"""

FULL_YAML = """\
name: edges
input:
  cross:
    - repo: images
      glob: /*
    - {repo: models, branch: stable, glob: /, name: model}
transform:
  image: python:3.12-slim
  cmd:
    - python
    - /code/edges.py
  env:
    MODE: fast
    THRESHOLD: "0.5"
output: {repo: edges-out, branch: results}
parallelism: 4
resources:
  memory: 512M
  cpus: 1.5
"""

FULL_SPEC = PipelineSpec(
    name="edges",
    inputs=(
        InputSpec("images", glob="/*"),
        InputSpec("models", branch="stable", glob="/", name="model"),
    ),
    combine="cross",
    transform=Transform(
        image="python:3.12-slim",
        cmd=("python", "/code/edges.py"),
        env=(("MODE", "fast"), ("THRESHOLD", "0.5")),
    ),
    output=OutputSpec("edges-out", "results"),
    parallelism=4,
    resources=Resources(memory_bytes=512 * 1024**2, cpus=1.5),
)


def base() -> dict[str, Any]:
    """A valid spec with every field, for the bad-spec table to spoil one field of."""
    return {
        "name": "edges",
        "input": {"cross": [{"repo": "images", "glob": "/*"}, {"repo": "models"}]},
        "transform": {"image": "alpine:3", "cmd": ["sh", "-c", "true"], "env": {"A": "1"}},
        "output": {"repo": "edges", "branch": "master"},
        "parallelism": 2,
        "resources": {"memory": "64M", "cpus": 1},
    }


def problems_of(raw: Any) -> list[str]:
    """The problem lines of the error ``validate`` raises (the header dropped)."""
    with pytest.raises(InvalidRequest) as caught:
        validate(raw)
    header, *lines = str(caught.value).split("\n")
    assert header.startswith("the pipeline spec has ")
    return lines


# -- parsing -------------------------------------------------------------------------------


def test_minimal_yaml_takes_the_defaults() -> None:
    assert parse_spec(MINIMAL_YAML) == PipelineSpec(
        name="edges",
        inputs=(InputSpec("images", "master", "/*", "images"),),
        combine="cross",
        transform=Transform("python:3.12-slim", ("python", "/code/edges.py"), ()),
        output=OutputSpec("edges", "master"),
        parallelism=1,
        resources=Resources(None, None),
    )


def test_glob_defaults_to_the_whole_input() -> None:
    raw = yaml.safe_load(MINIMAL_YAML)
    del raw["input"]["glob"]
    assert validate(raw).inputs[0].glob == "/"


def test_json_and_yaml_say_the_same() -> None:
    assert parse_spec(FULL_JSON) == FULL_SPEC
    assert parse_spec(FULL_YAML) == FULL_SPEC
    assert parse_spec(FULL_JSON.encode(), filename_hint="p.json") == FULL_SPEC
    assert parse_spec(FULL_YAML.encode(), filename_hint="p.yml") == FULL_SPEC
    assert parse_spec(FULL_JSON, filename_hint="p.YAML") == FULL_SPEC


def test_utf8_bom_is_accepted() -> None:
    assert parse_spec(b"\xef\xbb\xbf" + FULL_JSON.encode()) == FULL_SPEC


def test_a_json_hint_refuses_yaml() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_spec(MINIMAL_YAML, filename_hint="spec.json")


def test_yaml_flow_mapping_without_hint() -> None:
    text = "{name: p, input: {repo: r}, transform: {image: alpine, cmd: [true]}, output: {repo: o}}"
    with pytest.raises(InvalidRequest, match=r"transform\.cmd\[0\]: must be a string"):
        parse_spec(text)
    assert parse_spec(text.replace("[true]", "['true']")).output == OutputSpec("o")


def test_broken_json_without_hint_reports_the_json_error() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_spec('{"name": "p",,}')


@pytest.mark.parametrize(
    "text",
    [
        "name: p\nname: q\ninput: {repo: r}\ntransform: {image: a, cmd: [b]}\n",
        "name: p\ninput: {repo: r, repo: s}\ntransform: {image: a, cmd: [b]}\n",
    ],
)
def test_duplicate_yaml_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="twice"):
        parse_spec(text)


def test_duplicate_json_keys_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="'name' twice"):
        parse_spec('{"name": "p", "name": "q"}')


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = (
        "defaults: &d {branch: dev, glob: /*}\n"
        "name: p\n"
        "input: {cross: [{<<: *d, repo: a}, {<<: *d, repo: b, glob: /}]}\n"
        "transform: {image: alpine, cmd: [x]}\n"
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_spec(text)
    # The only problem is the unknown top-level anchor holder, not the overridden glob.
    assert str(caught.value).split("\n")[1:] == [
        "defaults: unknown field; accepted: name, input, transform, output, parallelism, "
        "resources, datum_tries, datum_timeout, job_timeout"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the pipeline spec is empty"),
        ("[1, 2]", "must be a mapping of name, input"),
        ("just words", "must be a mapping of name, input"),
        ("a: [", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ('{"parallelism": NaN}', "not valid"),
    ],
)
def test_texts_that_are_no_spec(text: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        parse_spec(text, filename_hint="spec.json" if "NaN" in text else None)


def test_non_utf8_bytes_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        parse_spec(b"name: \xff\n")


def test_a_huge_spec_is_refused_unread() -> None:
    with pytest.raises(InvalidRequest, match="bytes long"):
        parse_spec("#" * (MAX_SPEC_BYTES + 1))


# -- the input grammar ---------------------------------------------------------------------


def test_union_of_inputs() -> None:
    raw = base()
    raw["input"] = {"union": [{"repo": "a"}, {"repo": "b", "glob": "/*/*"}]}
    spec = validate(raw)
    assert spec.combine == "union"
    assert [i.name for i in spec.inputs] == ["a", "b"]


def test_one_repo_twice_with_distinct_names() -> None:
    raw = base()
    raw["input"] = {
        "cross": [
            {"repo": "r", "branch": "old", "name": "before"},
            {"repo": "r", "branch": "new", "name": "after"},
        ]
    }
    assert [(i.repo, i.name) for i in validate(raw).inputs] == [("r", "before"), ("r", "after")]


def test_one_alias_is_enough_to_tell_inputs_apart() -> None:
    raw = base()
    raw["input"] = {"cross": [{"repo": "r"}, {"repo": "r", "name": "r2"}]}
    assert [i.name for i in validate(raw).inputs] == ["r", "r2"]


def test_single_input_is_recorded_as_cross() -> None:
    raw = base()
    raw["input"] = {"repo": "images"}
    assert validate(raw).combine == "cross"


def test_env_is_sorted() -> None:
    raw = base()
    raw["transform"]["env"] = {"Z": "1", "A": "2", "_M": ""}
    assert validate(raw).transform.env == (("A", "2"), ("Z", "1"), ("_M", ""))


def test_memory_as_bytes_and_whole_cpus() -> None:
    raw = base()
    raw["resources"] = {"memory": 8 * 1024**2, "cpus": 2}
    assert validate(raw).resources == Resources(8 * 1024**2, 2.0)


def test_empty_resources_mean_no_limits() -> None:
    raw = base()
    raw["resources"] = {}
    assert validate(raw).resources == Resources()


def test_output_branch_alone_keeps_the_default_repo() -> None:
    raw = base()
    raw["output"] = {"branch": "dev"}
    assert validate(raw).output == OutputSpec("edges", "dev")


# -- bad specs: every problem, at its JSON path --------------------------------------------

Spoil = Callable[[dict[str, Any]], None]


def setting(path: str, value: Any) -> Spoil:
    """A spoiler that sets ``a.b[1].c`` style ``path`` (dots and [n] only) to ``value``."""

    def spoil(raw: dict[str, Any]) -> None:
        keys: list[Any] = []
        for part in path.split("."):
            name, _, index = part.partition("[")
            keys.append(name)
            if index:
                keys.append(int(index.rstrip("]")))
        target: Any = raw
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return spoil


def deleting(*keys: str | int) -> Spoil:
    def spoil(raw: dict[str, Any]) -> None:
        target: Any = raw
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return spoil


def both(*spoilers: Spoil) -> Spoil:
    def spoil(raw: dict[str, Any]) -> None:
        for spoiler in spoilers:
            spoiler(raw)

    return spoil


BAD_SPECS: list[tuple[str, Spoil, str, str]] = [
    # (test id, how the base spec is spoiled, the path reported, what the message says)
    ("unknown top field", setting("colour", "red"), "colour", "accepted: name, input, transform"),
    ("typo hint", setting("paralelism", 2), "paralelism", "did you mean 'parallelism'?"),
    ("odd key", setting("input.cross[1].7", 1), 'input.cross[1]["7"]', "unknown field"),
    ("no name", deleting("name"), "name", "required field is missing"),
    ("no input", deleting("input"), "input", "required field is missing"),
    ("no transform", deleting("transform"), "transform", "required field is missing"),
    ("name type", setting("name", 5), "name", "must be a string, not an integer"),
    ("name chars", setting("name", "a/b"), "name", "the pipeline name 'a/b' contains '/'"),
    ("name start", setting("name", ".x"), "name", "must start with a letter or digit"),
    ("name length", setting("name", "n" * 64), "name", "at most 63"),
    ("input list", setting("input", [{"repo": "a"}]), "input", "a list is ambiguous"),
    ("input type", setting("input", "images"), "input", "must be a mapping of repo, branch"),
    (
        "cross and union",
        setting("input", {"cross": [], "union": []}),
        "input",
        'either "cross" or "union"',
    ),
    ("cross extra", setting("input.repo", "x"), "input.repo", "accepted: cross, union"),
    ("cross type", setting("input.cross", {"repo": "a"}), "input.cross", "must be a list"),
    ("cross of one", setting("input.cross", [{"repo": "a"}]), "input.cross", "takes 2 to 16"),
    (
        "cross of 17",
        setting("input.cross", [{"repo": f"r{n}"} for n in range(17)]),
        "input.cross",
        "has 17 inputs",
    ),
    (
        "nested",
        setting("input.cross[1]", {"union": [{"repo": "a"}, {"repo": "b"}]}),
        "input.cross[1]",
        "a union inside a cross is not supported",
    ),
    ("input item type", setting("input.cross[1]", "models"), "input.cross[1]", "not a string"),
    ("input no repo", deleting("input", "cross", 1, "repo"), "input.cross[1].repo", "required"),
    (
        "input unknown",
        setting("input.cross[0].commit", "x"),
        "input.cross[0].commit",
        "accepted: repo, branch, glob, name",
    ),
    (
        "repo chars",
        setting("input.cross[0].repo", "im ages"),
        "input.cross[0].repo",
        "the repo name 'im ages' contains ' '",
    ),
    (
        "branch empty",
        setting("input.cross[0].branch", ""),
        "input.cross[0].branch",
        "the branch name is empty",
    ),
    (
        "branch yaml bool",
        setting("input.cross[0].branch", False),
        "input.cross[0].branch",
        "not a boolean",
    ),
    (
        "alias chars",
        setting("input.cross[0].name", "a:b"),
        "input.cross[0].name",
        "the input name 'a:b'",
    ),
    (
        "glob type",
        setting("input.cross[0].glob", 1),
        "input.cross[0].glob",
        "must be a string such as / or /*",
    ),
    (
        "glob relative",
        setting("input.cross[0].glob", "*"),
        "input.cross[0].glob",
        "must start with '/'",
    ),
    (
        "glob empty",
        setting("input.cross[0].glob", ""),
        "input.cross[0].glob",
        "must start with '/'",
    ),
    ("glob dotdot", setting("input.cross[0].glob", "/../*"), "input.cross[0].glob", "'..' segment"),
    ("glob dot", setting("input.cross[0].glob", "/a/./b"), "input.cross[0].glob", "'.' segment"),
    (
        "glob double slash",
        setting("input.cross[0].glob", "//*"),
        "input.cross[0].glob",
        "empty segment",
    ),
    (
        "glob trailing slash",
        setting("input.cross[0].glob", "/*/"),
        "input.cross[0].glob",
        "empty segment",
    ),
    ("glob any depth", setting("input.cross[0].glob", "/**"), "input.cross[0].glob", "'**'"),
    (
        "glob bracket",
        setting("input.cross[0].glob", "/[ab"),
        "input.cross[0].glob",
        "without a closing ']'",
    ),
    (
        "glob empty class",
        setting("input.cross[0].glob", "/[]"),
        "input.cross[0].glob",
        "without a closing ']'",
    ),
    (
        "same repo twice",
        setting("input.cross[1].repo", "images"),
        "input.cross[1].repo",
        "input.cross[0] is mounted at /pfs/in/images too",
    ),
    (
        "same alias twice",
        setting("input.cross", [{"repo": "a", "name": "x"}, {"repo": "b", "name": "x"}]),
        "input.cross[1].name",
        "'x' is also the name of input.cross[0]",
    ),
    (
        "alias takes a repo's name",
        setting("input.cross", [{"repo": "a"}, {"repo": "b", "name": "a"}]),
        "input.cross[1].name",
        "'a' is also the name of input.cross[0]",
    ),
    ("loop", setting("output.repo", "models"), "output.repo", "also the repo of input.cross[1]"),
    (
        "loop by default",
        both(setting("name", "images"), deleting("output")),
        "name",
        "defaults to the pipeline's name, 'images'",
    ),
    (
        "transform type",
        setting("transform", ["alpine"]),
        "transform",
        "must be a mapping of image, cmd, env",
    ),
    (
        "transform unknown",
        setting("transform.entrypoint", "x"),
        "transform.entrypoint",
        "accepted: image, cmd, env",
    ),
    ("no image", deleting("transform", "image"), "transform.image", "required"),
    ("image type", setting("transform.image", None), "transform.image", "not null"),
    ("image empty", setting("transform.image", ""), "transform.image", "is empty"),
    ("image space", setting("transform.image", "alpine 3"), "transform.image", "whitespace"),
    ("no cmd", deleting("transform", "cmd"), "transform.cmd", "required"),
    (
        "cmd string",
        setting("transform.cmd", "echo hi"),
        "transform.cmd",
        'write ["sh", "-c", "..."]',
    ),
    ("cmd empty", setting("transform.cmd", []), "transform.cmd", "is empty"),
    (
        "cmd item",
        setting("transform.cmd[1]", 3),
        "transform.cmd[1]",
        "must be a string, not an integer",
    ),
    ("cmd nul", setting("transform.cmd[2]", "a\0b"), "transform.cmd[2]", "NUL"),
    ("env type", setting("transform.env", ["A=1"]), "transform.env", "mapping of variable names"),
    ("env key", setting("transform.env.1A", "x"), 'transform.env["1A"]', "is not a variable name"),
    (
        "env key dash",
        setting("transform.env.A-B", "x"),
        'transform.env["A-B"]',
        "is not a variable name",
    ),
    (
        "env reserved",
        setting("transform.env.PFS_DATUM", "x"),
        "transform.env.PFS_DATUM",
        "reserved",
    ),
    ("env value", setting("transform.env.A", 1), "transform.env.A", 'quote it in YAML: A: "..."'),
    ("output type", setting("output", "edges"), "output", "must be a mapping of repo, branch"),
    ("output null", setting("output", None), "output", "not null"),
    ("output unknown", setting("output.commit", "x"), "output.commit", "accepted: repo, branch"),
    (
        "output repo",
        setting("output.repo", "-x"),
        "output.repo",
        "must start with a letter or digit",
    ),
    ("output branch", setting("output.branch", "a@b"), "output.branch", "contains '@'"),
    ("parallelism zero", setting("parallelism", 0), "parallelism", "give 1 to 64"),
    ("parallelism 65", setting("parallelism", 65), "parallelism", "give 1 to 64"),
    ("parallelism bool", setting("parallelism", True), "parallelism", "not a boolean"),
    ("parallelism float", setting("parallelism", 2.0), "parallelism", "not a number"),
    ("parallelism string", setting("parallelism", "2"), "parallelism", "not a string"),
    ("resources type", setting("resources", "1G"), "resources", "mapping of memory, cpus"),
    ("resources unknown", setting("resources.gpus", 1), "resources.gpus", "accepted: memory, cpus"),
    (
        "memory unit",
        setting("resources.memory", "1Q"),
        "resources.memory",
        "size '1Q' is not understood",
    ),
    (
        "memory small",
        setting("resources.memory", "1M"),
        "resources.memory",
        "below Docker's minimum",
    ),
    ("memory type", setting("resources.memory", 1.5), "resources.memory", "not a number"),
    ("memory bool", setting("resources.memory", True), "resources.memory", "not a boolean"),
    ("cpus zero", setting("resources.cpus", 0), "resources.cpus", "above 0, at most 64"),
    ("cpus many", setting("resources.cpus", 64.5), "resources.cpus", "above 0, at most 64"),
    ("cpus inf", setting("resources.cpus", float("inf")), "resources.cpus", "out of range"),
    ("cpus nan", setting("resources.cpus", float("nan")), "resources.cpus", "out of range"),
    ("cpus string", setting("resources.cpus", "2"), "resources.cpus", "must be a number"),
]


@pytest.mark.parametrize(
    ("spoil", "path", "says"),
    [pytest.param(spoil, path, says, id=name) for name, spoil, path, says in BAD_SPECS],
)
def test_each_bad_spec_names_its_path(spoil: Spoil, path: str, says: str) -> None:
    raw = base()
    spoil(raw)
    lines = problems_of(raw)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: "), lines
    assert says in lines[0], lines


def test_the_base_spec_is_valid() -> None:
    validate(base())


def test_six_problems_are_all_listed() -> None:
    raw = base()
    raw["name"] = "bad name"
    raw["input"]["cross"][1]["glob"] = "/../x"
    raw["transform"]["cmd"] = []
    raw["transform"]["env"]["PFS_X"] = "1"
    raw["parallelism"] = 100
    raw["resources"]["shares"] = 3
    with pytest.raises(InvalidRequest) as caught:
        validate(raw)
    lines = str(caught.value).split("\n")
    assert lines[0] == "the pipeline spec has 6 problems:"
    assert [line.partition(": ")[0] for line in lines[1:]] == [
        "name",
        "input.cross[1].glob",
        "transform.cmd",
        "transform.env.PFS_X",
        "parallelism",
        "resources.shares",
    ]


def test_problems_of_one_input_do_not_hide_a_collision() -> None:
    raw = base()
    raw["input"]["cross"][1] = {"repo": "images", "glob": "*"}
    assert [line.partition(": ")[0] for line in problems_of(raw)] == [
        "input.cross[1].glob",
        "input.cross[1].repo",
    ]


def test_a_flood_of_problems_is_cut_short() -> None:
    raw = base()
    raw["transform"]["cmd"] = list(range(MAX_PROBLEMS + 50))
    with pytest.raises(InvalidRequest) as caught:
        validate(raw)
    lines = str(caught.value).split("\n")
    assert lines[0] == f"the pipeline spec has {MAX_PROBLEMS + 50} problems:"
    assert len(lines) == MAX_PROBLEMS + 2
    assert lines[-1] == "... and 50 more problems"


def test_one_problem_is_singular() -> None:
    raw = base()
    raw["parallelism"] = 0
    with pytest.raises(InvalidRequest, match=r"^the pipeline spec has 1 problem:\n"):
        validate(raw)


# -- globs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "segments"),
    [
        ("/", ()),
        ("/*", ("*",)),
        ("/*/*", ("*", "*")),
        ("/data/*.csv", ("data", "*.csv")),
        ("/20??-[01][0-9]/[!.]*", ("20??-[01][0-9]", "[!.]*")),
        ("/[]]x", ("[]]x",)),
        ("/.hidden", (".hidden",)),
        ("/a b/c\\d", ("a b", "c\\d")),
    ],
)
def test_good_globs(glob: str, segments: tuple[str, ...]) -> None:
    assert split_glob(glob) == segments


@pytest.mark.parametrize(
    "glob",
    ["", "*", "a/*", "//", "/a//b", "/*/", "/..", "/a/.", "/**", "/a**b", "/[x", "/[!]", "/x\0"],
)
def test_bad_globs(glob: str) -> None:
    with pytest.raises(InvalidRequest, match="the glob"):
        split_glob(glob)


# -- canonical form and fingerprint --------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)
globs = st.sampled_from(["/", "/*", "/*/*", "/data/*.csv", "/[ab]?"])


@st.composite
def specs(draw: st.DrawFn) -> PipelineSpec:
    repos = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    inputs = tuple(
        InputSpec(repo, draw(names), draw(globs), draw(st.one_of(st.just(""), names)))
        for repo in repos
    )
    if len({i.name for i in inputs}) < len(inputs):
        inputs = tuple(InputSpec(i.repo, i.branch, i.glob) for i in inputs)
    output = draw(names.filter(lambda n: n not in repos))
    env = draw(
        st.dictionaries(
            st.from_regex(r"[A-OQ-Z_][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=8)
        )
    )
    return PipelineSpec(
        name=draw(names.filter(lambda n: n not in repos)),
        inputs=inputs,
        combine=draw(st.sampled_from(["cross", "union"])) if len(inputs) > 1 else "cross",
        transform=Transform(
            image=draw(st.from_regex(r"[a-z0-9./:-]{1,20}", fullmatch=True)),
            cmd=tuple(
                draw(
                    st.lists(
                        st.text(max_size=8).filter(lambda t: "\0" not in t), min_size=1, max_size=4
                    )
                )
            ),
            env=tuple(sorted((k, v) for k, v in env.items() if "\0" not in v)),
        ),
        output=OutputSpec(output, draw(names)),
        parallelism=draw(st.integers(1, 64)),
        resources=Resources(
            draw(st.one_of(st.none(), st.integers(6 * 1024**2, 2**40))),
            draw(st.one_of(st.none(), st.floats(0.01, 64))),
        ),
    )


@given(specs())
def test_canonical_form_round_trips(spec: PipelineSpec) -> None:
    assert validate(spec_to_json(spec)) == spec
    assert parse_spec(json.dumps(spec_to_json(spec))) == spec
    assert parse_spec(yaml.safe_dump(spec_to_json(spec)), filename_hint="p.yaml") == spec


# The strategy builds whole specs (up to 16 inputs): on a loaded CI machine generating
# them trips hypothesis' speed check, which says nothing about pfs.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_canonical_form_is_a_fixed_point(spec: PipelineSpec) -> None:
    once = spec_to_json(spec)
    assert spec_to_json(validate(copy.deepcopy(once))) == once


def test_canonical_form_of_the_example() -> None:
    assert spec_to_json(FULL_SPEC) == {
        "name": "edges",
        "input": {
            "cross": [
                {"repo": "images", "branch": "master", "glob": "/*", "name": "images"},
                {"repo": "models", "branch": "stable", "glob": "/", "name": "model"},
            ]
        },
        "transform": {
            "image": "python:3.12-slim",
            "cmd": ["python", "/code/edges.py"],
            "env": {"MODE": "fast", "THRESHOLD": "0.5"},
        },
        "output": {"repo": "edges-out", "branch": "results"},
        "parallelism": 4,
        "resources": {"memory": 512 * 1024**2, "cpus": 1.5},
        "datum_tries": 1,
    }


def _with(spec: PipelineSpec, **changes: Any) -> PipelineSpec:
    raw = spec_to_json(spec)
    for path, value in changes.items():
        setting(path.replace("__", "."), value)(raw)
    return validate(raw)


@pytest.mark.parametrize(
    "changes",
    [
        {"transform__image": "python:3.13"},
        {"transform__cmd": ["python", "/code/other.py"]},
        {"transform__env": {"MODE": "slow", "THRESHOLD": "0.5"}},
        {"input__cross[0]__glob": "/*/*"},
        {"input__cross[1]__name": "weights"},
        {"input__cross[1]__repo": "models2"},
    ],
)
def test_fingerprint_changes_with_what_a_datum_computes(changes: dict[str, Any]) -> None:
    assert fingerprint(_with(FULL_SPEC, **changes)) != fingerprint(FULL_SPEC)


@pytest.mark.parametrize(
    "changes",
    [
        {"parallelism": 9},
        {"resources": {}},
        {"output": {"repo": "elsewhere", "branch": "x"}},
        {"input__cross[0]__branch": "dev"},
        {"name": "renamed"},
    ],
)
def test_fingerprint_ignores_how_and_where(changes: dict[str, Any]) -> None:
    assert fingerprint(_with(FULL_SPEC, **changes)) == fingerprint(FULL_SPEC)


def test_fingerprint_tells_cross_from_union() -> None:
    raw = spec_to_json(FULL_SPEC)
    raw["input"] = {"union": raw["input"]["cross"]}
    assert fingerprint(validate(raw)) != fingerprint(FULL_SPEC)


def test_fingerprint_is_stable() -> None:
    assert fingerprint(FULL_SPEC) == fingerprint(parse_spec(FULL_YAML))
    assert len(fingerprint(FULL_SPEC)) == 64


# -- retries and timeouts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (90, 90.0),
        (0.5, 0.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (" 3m ", 180.0),
        ("7d" if False else "168h", 604800.0),
    ],
)
def test_a_duration_is_seconds_or_a_string_with_units(given: Any, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (0, "out of range"),
        (-5, "out of range"),
        ("0s", "out of range"),
        (8 * 24 * 3600, "at most 604800"),
        ("10 minutes", "is not seconds as a number"),
        ("m", "is not seconds"),
        ("", "is not seconds"),
        (True, "not a boolean"),
        ([1], "not a list"),
        (float("nan"), "out of range"),
        ("1x", "is not seconds"),
    ],
)
def test_a_bad_duration_says_what_is_accepted(given: Any, said: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_duration(given)
    assert said in str(caught.value)
    assert "90s" in str(caught.value) or "604800" in str(caught.value)


def test_tries_and_timeouts_are_read_defaulted_and_written_back() -> None:
    raw = spec_to_json(FULL_SPEC)
    assert validate(raw).datum_tries == 1
    assert validate(raw).datum_timeout is None and validate(raw).job_timeout is None
    raw.update(datum_tries=3, datum_timeout="90s", job_timeout="1h")
    spec = validate(raw)
    assert (spec.datum_tries, spec.datum_timeout, spec.job_timeout) == (3, 90.0, 3600.0)
    written = spec_to_json(spec)
    assert written["datum_timeout"] == 90.0 and written["job_timeout"] == 3600.0
    assert validate(written) == spec


def test_every_bad_retry_or_timeout_field_is_listed_at_once() -> None:
    raw = spec_to_json(FULL_SPEC)
    raw.update(datum_tries=11, datum_timeout="soon", job_timeout=0)
    with pytest.raises(InvalidRequest) as caught:
        validate(raw)
    text = str(caught.value)
    assert "3 problems" in text
    assert "datum_tries: 11 is out of range; give 1 to 10" in text
    assert "datum_timeout: 'soon' is not seconds" in text
    assert "job_timeout: 0 is out of range" in text
    raw.update(datum_tries="2", datum_timeout=1, job_timeout=1)
    with pytest.raises(InvalidRequest, match="datum_tries: must be an integer, not a string"):
        validate(raw)


def test_tries_and_timeouts_leave_the_fingerprint_alone() -> None:
    raw = spec_to_json(FULL_SPEC)
    raw.update(datum_tries=5, datum_timeout="1m", job_timeout="2h")
    assert fingerprint(validate(raw)) == fingerprint(FULL_SPEC)
