"""The branches pipelines read and write, derived from their stored documents.

This is the lookup the daemon hands to ``RepoService`` (``pfs_volume.branch_uses``):
read anew on every question, so a pipeline owns its output branch exactly while its
document exists, whatever crash came between.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pfs_volume.branch_uses import INPUT, OUTPUT, BranchUse
from pfs_volume.errors import PfsError
from pfs_volume.meta import MetadataStore
from pfs_volume.pipelines.documents import KIND
from pfs_volume.pipelines.spec import stored_spec

log = logging.getLogger(__name__)


class PipelineUses:
    """Answers which pipelines read or write a repo's branches.

    Args:
        store: the metadata store that holds the pipeline documents.
    """

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def __call__(self, repo: str) -> Sequence[BranchUse]:
        """Every use pipelines make of ``repo``'s branches, by pipeline name."""
        found: list[BranchUse] = []
        for name, body, _version in self.store.list_documents(KIND):
            try:
                spec = stored_spec(body)
            except (PfsError, ValueError, KeyError, TypeError) as exc:
                log.error("pipeline=%s: its stored spec cannot be read: %s", name, exc)
                continue
            found.extend(
                BranchUse(spec.name, i.repo, i.branch, INPUT) for i in spec.inputs if i.repo == repo
            )
            if spec.output.repo == repo:
                found.append(BranchUse(spec.name, repo, spec.output.branch, OUTPUT))
        return found
