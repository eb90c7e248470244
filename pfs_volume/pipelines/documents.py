"""Stored pipelines: the spec and the state the trigger needs, as documents of kind
``pipeline`` in the metadata store (JSON, swapped by version)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from pfs_volume.errors import NotFound
from pfs_volume.meta import MetadataStore
from pfs_volume.pipelines.spec import PipelineSpec, spec_to_json, stored_spec

KIND = "pipeline"


@dataclass(frozen=True)
class PipelineDocument:
    """A pipeline as stored.

    Attributes:
        spec: the validated spec.
        epoch: jobs with ids at or below it belong to an earlier pipeline of this name.
        stopped: no job is queued or run while set (``pfs pipeline stop``).
        reprocess_after: jobs at or below this id are never reused from (``pipeline
            update --reprocess``): the next job runs every datum.
        version: the store's version, for compare-and-swap.
    """

    spec: PipelineSpec
    epoch: str = ""
    stopped: bool = False
    reprocess_after: str = ""
    version: int = 0

    def to_json(self) -> str:
        """The stored form."""
        body: dict[str, Any] = {"spec": spec_to_json(self.spec), "epoch": self.epoch}
        if self.stopped:
            body["stopped"] = True
        if self.reprocess_after:
            body["reprocess_after"] = self.reprocess_after
        return json.dumps(body)

    @staticmethod
    def from_json(body: str, version: int) -> PipelineDocument:
        """Read a stored pipeline."""
        data = json.loads(body)
        return PipelineDocument(
            spec=stored_spec(body),
            epoch=str(data.get("epoch", "")),
            stopped=bool(data.get("stopped", False)),
            reprocess_after=str(data.get("reprocess_after", "")),
            version=version,
        )


class PipelineDocuments:
    """Pipelines in the metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def find(self, name: str) -> PipelineDocument | None:
        """The pipeline, or None."""
        found = self.store.get_document(KIND, name)
        return None if found is None else PipelineDocument.from_json(*found)

    def get(self, name: str) -> PipelineDocument:
        """The pipeline. Raises NotFound."""
        found = self.find(name)
        if found is None:
            raise NotFound(f"there is no pipeline {name!r}")
        return found

    def list(self) -> list[PipelineDocument]:
        """Every pipeline, by name."""
        return [
            PipelineDocument.from_json(body, version)
            for _name, body, version in self.store.list_documents(KIND)
        ]

    def add(self, document: PipelineDocument) -> PipelineDocument:
        """Store a new pipeline. Raises Conflict when the name is taken."""
        version = self.store.put_document(KIND, document.spec.name, document.to_json(), None)
        return replace(document, version=version)

    def save(self, document: PipelineDocument) -> PipelineDocument:
        """Store a changed pipeline (compare-and-swap on its version). Raises Conflict."""
        version = self.store.put_document(
            KIND, document.spec.name, document.to_json(), document.version
        )
        return replace(document, version=version)

    def delete(self, name: str) -> None:
        """Drop a pipeline's document."""
        self.store.delete_document(KIND, name)
