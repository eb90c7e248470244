"""The CLI's API client against the OpenAPI document: every route it calls exists there
with that method, so the client's copy of the route table cannot drift from the API's."""

from __future__ import annotations

import inspect
import io
import re
from typing import Any
from urllib.parse import unquote

import pytest

from pfs_volume.api.openapi import openapi_document
from pfs_volume.cli.client import ApiClient
from pfs_volume.cli.routes import ROUTES, Route

PATHS: dict[str, Any] = openapi_document()["paths"]
AWKWARD = "a b/c?d#e%"
"""A path part that changes the route unless it is quoted."""


class _Answer(dict[str, Any]):
    """Any answer: every field the client reads is empty."""

    def __missing__(self, key: str) -> Any:
        return {}

    def json(self) -> _Answer:
        return self


class _Recording(ApiClient):
    """A client that records its requests instead of sending them."""

    def __init__(self) -> None:
        super().__init__("/nowhere.sock")
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, route: str, /, **params: Any) -> Any:
        self.calls.append((method, route, params))
        return _Answer()

    def stream(
        self, method: str, route: str, /, data: Any = None, timeout: float = 0, **params: Any
    ) -> Any:
        self.calls.append((method, route, {"data": data, "timeout": timeout, **params}))
        return _Answer()


def _template_pattern(template: str) -> re.Pattern[str]:
    """A path template as a pattern one quoted segment per ``{part}`` matches."""
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$")


def _argument(annotation: str) -> Any:
    """A value of the type a method's parameter is annotated with."""
    if "bool" in annotation:
        return True
    if "int" in annotation:
        return 3
    if "float" in annotation:
        return 1.5
    if "IO" in annotation:
        return io.BytesIO(b"x")
    if "bytes" in annotation:
        return b"name: p"
    return AWKWARD


def _typed_methods() -> list[str]:
    return [
        name
        for name, _ in inspect.getmembers(ApiClient, inspect.isfunction)
        if not name.startswith("_") and name not in ("request", "stream")
    ]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_every_route_of_the_client_is_in_the_openapi_document(route: Route) -> None:
    assert route.template in PATHS, f"{route.template} is not in the OpenAPI document"
    assert route.method.lower() in PATHS[route.template], (
        f"{route.method} {route.template} is not in the OpenAPI document"
    )


@pytest.mark.parametrize("name", _typed_methods())
def test_each_method_calls_one_documented_route_with_documented_query_parameters(
    name: str,
) -> None:
    client = _Recording()
    method = getattr(client, name)
    arguments = [
        _argument(str(p.annotation)) for p in inspect.signature(method).parameters.values()
    ]
    method(*arguments)
    assert len(client.calls) == 1
    verb, path, params = client.calls[0]
    matches = [r for r in ROUTES if r.method == verb and _template_pattern(r.template).match(path)]
    assert matches, f"{name} called {verb} {path}, no route of the client"
    template = matches[0].template
    if "{" in template:
        assert AWKWARD not in path and unquote(path).count(AWKWARD) == template.count("{")
    documented = {
        p["name"] for p in PATHS[template][verb.lower()]["parameters"] if p["in"] == "query"
    }
    sent = {k for k, v in params.items() if v is not None and k not in ("json", "data", "timeout")}
    if name in ("wait_job", "wait_commit"):
        sent.add("timeout")
    assert sent <= documented, f"{name} sends {sent - documented}, not in the document"


def test_the_route_table_is_whole() -> None:
    """Every method's route is a constant of the table, and every constant is used."""
    client = _Recording()
    used = set()
    for name in _typed_methods():
        method = getattr(client, name)
        method(
            *[_argument(str(p.annotation)) for p in inspect.signature(method).parameters.values()]
        )
        verb, path, _ = client.calls[-1]
        used |= {
            r for r in ROUTES if r.method == verb and _template_pattern(r.template).match(path)
        }
    assert used == set(ROUTES)
