"""A job's input volumes are removed from Docker's list whether pfs runs as a legacy
plugin (driver ``pfs``) or as a managed one (Docker lists it as ``pfs:latest``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from pfs_volume.pipelines.containers import Containers
from pfs_volume.pipelines.jobs import JobRecord
from pfs_volume.pipelines.spec import PipelineSpec


class ListingApi:
    """``client.api`` listing volumes as Docker does: the ``driver`` filter's values are
    alternatives, each matched exactly against the driver name Docker recorded."""

    def __init__(self, volumes: dict[str, str]) -> None:
        self.listed = volumes
        self.removed: list[str] = []

    def volumes(self, filters: dict[str, Any]) -> dict[str, Any]:
        wanted = filters["driver"]
        wanted = [wanted] if isinstance(wanted, str) else wanted
        return {
            "Volumes": [
                {"Name": name, "Driver": driver}
                for name, driver in self.listed.items()
                if driver in wanted
            ]
        }

    def remove_volume(self, name: str) -> None:
        self.removed.append(name)


@pytest.mark.parametrize("listed_driver", ["pfs", "pfs:latest"])
def test_a_jobs_input_volume_is_removed_for_a_legacy_and_a_managed_plugin(
    listed_driver: str,
) -> None:
    api = ListingApi(
        {
            "pfs/photos@abc123": listed_driver,
            "pfs/photos@other": listed_driver,
            "other/photos@abc123": "other",
        }
    )
    containers = Containers(lambda: SimpleNamespace(api=api), "pfs")
    spec = cast(PipelineSpec, SimpleNamespace(inputs=[SimpleNamespace(name="in", repo="photos")]))
    job = cast(JobRecord, SimpleNamespace(id="job1", inputs={"in": "photos@abc123"}))

    containers.forget_volumes(spec, job)

    assert api.removed == ["pfs/photos@abc123"]
