"""The pfs API app over given services, wired as the daemon wires it, for tests that
serve the API without a daemon. Pipelines, unless given, have no Docker engine: they
are created and listed, but a job fails saying there is no engine."""

from __future__ import annotations

from typing import Any

from flask import Flask

from pfs_volume.api.app import create_api_app
from pfs_volume.daemon import api_services
from pfs_volume.doctor import Doctor
from pfs_volume.errors import StorageError
from pfs_volume.pipelines.runner import JobRunner
from pfs_volume.pipelines.service import PipelineService
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService


def _no_docker() -> Any:
    raise StorageError("this API serves no Docker engine: pipelines cannot run jobs here")


def api_app(
    repos: RepoService,
    volumes: VolumeService,
    pipelines: PipelineService | None = None,
    doctor: Doctor | None = None,
) -> Flask:
    """The API app over ``repos`` and ``volumes`` (and ``pipelines``, ``doctor``)."""
    if pipelines is None:
        runner = JobRunner(repos, repos.pool, _no_docker, volumes.prefix)
        pipelines = PipelineService(repos, repos.store, repos.node_id, runner)
    fsck = repos._parts.fsck.check  # as the daemon hands it over from the parts
    return create_api_app(api_services(repos, volumes, pipelines, doctor, None, fsck))
