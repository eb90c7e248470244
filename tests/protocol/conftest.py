"""Each protocol test runs twice: through flask's test client and over a real unix
socket served by waitress, exactly as the daemon serves it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests_unixsocket
from flask import Flask

from pfs_volume.repos import RepoService
from pfs_volume.transport import UnixSocketServer
from pfs_volume.volumes import VolumeService
from plugin import create_plugin_app
from tests.api_app import api_app

Caller = Callable[..., Any]


class Transport:
    """Sends raw HTTP requests to an app, in process or over its unix socket."""

    def __init__(self, app: Flask, socket: Path | None) -> None:
        self.app = app
        self.socket = socket
        self.session = requests_unixsocket.Session() if socket else None

    def request(
        self, method: str, path: str, data: bytes = b"", params: dict[str, str] | None = None
    ) -> tuple[int, Any, str]:
        """(status, decoded JSON body, content type)."""
        if self.session is None:
            response = self.app.test_client().open(
                path, method=method, data=data, query_string=params
            )
            return response.status_code, response.get_json(force=True), response.content_type
        url = "http+unix://" + str(self.socket).replace("/", "%2F") + path
        reply = self.session.request(method, url, data=data, params=params, timeout=60)
        return reply.status_code, reply.json(), reply.headers.get("Content-Type", "")


def _transport(
    request: pytest.FixtureRequest, app: Flask, tmp_path: Path, label: str
) -> Iterator[Transport]:
    if request.param == "flask":
        yield Transport(app, None)
        return
    server = UnixSocketServer(app, tmp_path / f"{label}.sock", label)
    server.start()
    try:
        yield Transport(app, server.path)
    finally:
        server.stop()


@pytest.fixture(params=["flask", "socket"])
def plugin_http(
    request: pytest.FixtureRequest, volumes: VolumeService, tmp_path: Path
) -> Iterator[Transport]:
    yield from _transport(request, create_plugin_app(volumes), tmp_path, "plugin")


@pytest.fixture(params=["flask", "socket"])
def api_http(
    request: pytest.FixtureRequest, repos: RepoService, volumes: VolumeService, tmp_path: Path
) -> Iterator[Transport]:
    yield from _transport(request, api_app(repos, volumes), tmp_path, "api")


@pytest.fixture
def api_socket(repos: RepoService, volumes: VolumeService, tmp_path: Path) -> Iterator[str]:
    """Three commits (photos: a, then b on master; c on dev) served on a real API socket."""
    for mount_id, name, file in [
        ("m1", "pfs/photos", "a"),
        ("m2", "pfs/photos", "b"),
        ("m3", "pfs/photos/dev", "c"),
    ]:
        path = volumes.mount(name, mount_id)
        (path / file).write_text(file)
        volumes.unmount(name, mount_id)
    server = UnixSocketServer(api_app(repos, volumes), tmp_path / "api.sock", "api")
    server.start()
    try:
        yield str(server.path)
    finally:
        server.stop()
