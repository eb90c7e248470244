"""The words of ownership refusals (pure)."""

from __future__ import annotations

from pfs_volume.branch_uses import INPUT, OUTPUT, BranchUse, in_use_refusal, owner_of


def test_the_owner_is_the_pipeline_writing_that_very_branch() -> None:
    uses = [BranchUse("a", "r", "master", INPUT), BranchUse("b", "r", "out", OUTPUT)]
    assert owner_of(uses, "r", "out") == "b"
    assert owner_of(uses, "r", "master") is None, "reading a branch does not own it"
    assert owner_of(uses, "other", "out") is None


def test_a_refused_delete_names_each_pipeline_with_what_it_does() -> None:
    uses = [
        BranchUse("self", "r", "master", INPUT),
        BranchUse("self", "r", "out", OUTPUT),
        BranchUse("down", "r", "out", INPUT),
    ]
    assert str(in_use_refusal("repo 'r'", uses)) == (
        "cannot delete repo 'r': pipeline down reads r/out; pipeline self reads r/master "
        "and writes r/out; delete those pipelines first (pfs pipeline delete down self), or "
        "give --force to delete them too"
    )
