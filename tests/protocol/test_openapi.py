"""The API's OpenAPI document matches its routes, and generated requests to every
operation never get a 500, and change nothing when they are refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from pfs_volume.api.openapi import openapi_document
from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from tests.api_app import api_app as build_api_app


def routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        found |= {(path, m.lower()) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return found


def test_every_route_is_documented_and_every_documented_route_exists(
    repos: RepoService, volumes: VolumeService
) -> None:
    documented = {(p, m) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert routes(build_api_app(repos, volumes)) == documented


def test_the_daemon_serves_it(repos: RepoService, volumes: VolumeService) -> None:
    reply = build_api_app(repos, volumes).test_client().get("/v1/openapi.json")
    assert reply.status_code == 200 and reply.get_json() == openapi_document()


@pytest.fixture
def api_app(repos: RepoService, volumes: VolumeService) -> Iterator[Flask]:
    for mount_id, file in (("m1", "a"), ("m2", "b")):
        path = volumes.mount("pfs/r", mount_id)
        (path / file).write_text(file)
        volumes.unmount("pfs/r", mount_id)
    yield build_api_app(repos, volumes)


@pytest.fixture
def api_schema(api_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", api_app)


def state(store: SqliteStore) -> tuple[object, ...]:
    repos = store.list_repos()
    return (
        repos,
        [store.list_branches(r.name) for r in repos],
        [store.list_commits(r.name) for r in repos],
        store.list_mounts(),
        store.list_volumes(),
        store.list_documents("pipeline"),
        store.list_documents("job"),
    )


# schemathesis leaves out the document's own route (no input; test_the_daemon_serves_it).
OPERATIONS = sorted(
    f"{m.upper()} {p}"
    for p, ops in openapi_document()["paths"].items()
    for m in ops
    if p != "/v1/openapi.json"
)


# Operations that take no input a request could get wrong (no parameters, or any string):
# negative generation has nothing to make for them; positive generation still runs.
NOTHING_TO_VIOLATE = {
    "GET /v1/health",
    "GET /v1/nodes",
    "GET /v1/doctor",
    "GET /v1/repos",
    "DELETE /v1/mounts/{mount_id}",
    "GET /v1/pipelines",
    "GET /v1/jobs/{job_id}",
    "GET /v1/jobs/{job_id}/datums",
    "POST /v1/jobs/{job_id}/rerun",
}
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in OPERATIONS if label not in NOTHING_TO_VIOLATE
]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_generated_requests_get_no_500_and_refusals_change_nothing(
    api_schema: Any, store: SqliteStore, label: str, mode: GenerationMode
) -> None:
    # schemathesis's own pytest plugin does not run under pytest 9; its strategies do.
    [operation] = [
        result.ok() for result in api_schema.get_all_operations() if result.ok().label == label
    ]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: Any) -> None:
        before = state(store)
        response = case.call()
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
        if response.status_code >= 400:
            assert state(store) == before, f"{label} refused ({response.status_code}) but changed"
            assert response.json()["error"]["message"]

    check()
