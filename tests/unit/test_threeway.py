"""The three-way planner as pure logic, against the whole-tree model, many examples.

The planner sees only the paths each side touched (here: every path whose entry
differs from the base, plus random untouched ones, as a superset is allowed) and must
reach exactly the model's result and conflicts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.history.threeway import Node, PathConflict, Side, plan
from tests import trees_model
from tests.trees_model import Tree


class DictTrees:
    def __init__(self, base: Tree, ours: Tree, theirs: Tree) -> None:
        self.trees = {Side.BASE: base, Side.OURS: ours, Side.THEIRS: theirs}

    def node(self, side: Side, path: str) -> Node | None:
        entry = self.trees[side].get(path)
        if entry is None:
            return None
        kind, mode, data = entry
        return Node(
            kind,
            mode,
            size=len(data) if isinstance(data, bytes) else 0,
            target=data if isinstance(data, str) else None,
        )

    def same_bytes(self, a: Side, b: Side, path: str) -> bool:
        return self.trees[a][path][2] == self.trees[b][path][2]


def touched(base: Tree, side: Tree, extra: list[str]) -> set[str]:
    changed = {p for p in set(base) | set(side) if base.get(p) != side.get(p)}
    return changed | {p for p in extra if p in base}


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_plan_is_the_model_merge(data: st.DataObject) -> None:
    base = trees_model.draw_edits(data.draw, {}, data.draw(st.integers(2, 9)))
    base_tree: Tree = {"": trees_model.ROOT}
    for edit in base:
        edit.apply_model(base_tree)
    sides = []
    for _ in range(2):
        side = dict(base_tree)
        for edit in trees_model.draw_edits(data.draw, base_tree, data.draw(st.integers(0, 4))):
            edit.apply_model(side)
        sides.append(side)
    ours, theirs = sides
    strategy = data.draw(st.sampled_from([None, "ours", "theirs"]))
    extra = data.draw(st.lists(st.sampled_from(sorted(base_tree) or ["x"]), max_size=3))
    expected, conflicts = trees_model.merge(base_tree, ours, theirs, strategy)

    trees = DictTrees(base_tree, ours, theirs)
    side = {"ours": Side.OURS, "theirs": Side.THEIRS}.get(strategy or "")
    result = plan(trees, touched(base_tree, ours, extra), touched(base_tree, theirs, []), side)

    assert {c.path for c in result.conflicts} == conflicts
    if not conflicts:
        merged = {p: e for p, e in ours.items() if p not in result.take}
        merged.update({p: theirs[p] for p in result.take if p in theirs})
        assert merged == expected


def test_conflicts_say_what_each_side_did() -> None:
    base: Tree = {
        "d": ("dir", 0o755, None),
        "d/f": ("file", 0o644, b"1"),
        "m": ("dir", 0o755, None),
    }
    ours: Tree = {"m": ("dir", 0o700, None)}  # deleted d, chmod m
    theirs: Tree = {**base, "d/f": ("file", 0o644, b"2"), "d/new": ("file", 0o644, b"")}
    theirs["m"] = ("file", 0o644, b"")
    trees = DictTrees(base, ours, theirs)
    result = plan(trees, {"d", "d/f", "m"}, {"d/f", "d/new", "m"})
    assert result.conflicts == [
        PathConflict("d/f", "deleted", "modified"),
        PathConflict("d/new", "deleted the folder d", "added a file"),
        PathConflict("m", "changed its mode 755 -> 700", "replaced a folder with a file"),
    ]
