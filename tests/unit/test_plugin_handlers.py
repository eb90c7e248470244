"""The volume-plugin handlers over a counting fake driver: wire format and errors."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from pfs_volume.errors import NotFound
from plugin import create_plugin_app
from plugin.protocol import CONTENT_TYPE, ENDPOINTS, VolumeInfo

CREATED = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)


class CountingDriver:
    """Answers every call and counts them; names starting with 'missing' are unknown."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.last: tuple[Any, ...] = ()

    def _seen(self, call: str, *args: Any) -> None:
        self.calls[call] += 1
        self.last = args
        if args and isinstance(args[0], str) and args[0].startswith("missing"):
            raise NotFound(f"no volume {args[0]}")

    def create(self, name: str, options: Mapping[str, Any]) -> None:
        self._seen("create", name, dict(options))

    def remove(self, name: str) -> None:
        self._seen("remove", name)

    def mount(self, name: str, mount_id: str) -> Path:
        self._seen("mount", name, mount_id)
        return Path("/pool") / name

    def unmount(self, name: str, mount_id: str) -> None:
        self._seen("unmount", name, mount_id)

    def unmount_unnamed(self) -> None:
        self._seen("unmount_unnamed")

    def path(self, name: str) -> str:
        self._seen("path", name)
        return f"/pool/{name}"

    def get(self, name: str) -> VolumeInfo:
        self._seen("get", name)
        return VolumeInfo(name, f"/pool/{name}", CREATED, {"repo": name})

    def list(self) -> list[VolumeInfo]:
        self._seen("list")
        return [VolumeInfo("a", "/pool/a", None, {}), VolumeInfo("b", "", CREATED, {})]


@pytest.fixture
def driver() -> CountingDriver:
    return CountingDriver()


@pytest.fixture
def client(driver: CountingDriver) -> FlaskClient:
    return create_plugin_app(driver).test_client()


def call(
    client: FlaskClient, endpoint: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """POST like Docker does: a JSON body and no Content-Type header."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = client.post(endpoint, data=data)
    assert response.content_type == CONTENT_TYPE
    return response.status_code, json.loads(response.data)


def test_activate_says_volume_driver(client: FlaskClient) -> None:
    assert call(client, "/Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})


def test_capabilities_scope(client: FlaskClient) -> None:
    assert call(client, "/VolumeDriver.Capabilities", {}) == (
        200,
        {"Capabilities": {"Scope": "local"}},
    )


def test_each_endpoint_calls_the_driver_once(client: FlaskClient, driver: CountingDriver) -> None:
    assert call(client, "/VolumeDriver.Create", {"Name": "v", "Opts": None}) == (200, {})
    assert call(client, "/VolumeDriver.Mount", {"Name": "v", "ID": "m1"}) == (
        200,
        {"Mountpoint": "/pool/v"},
    )
    assert call(client, "/VolumeDriver.Path", {"Name": "v"}) == (200, {"Mountpoint": "/pool/v"})
    assert call(client, "/VolumeDriver.Unmount", {"Name": "v", "ID": "m1"}) == (200, {})
    assert call(client, "/VolumeDriver.Get", {"Name": "v"}) == (
        200,
        {
            "Volume": {
                "Name": "v",
                "Mountpoint": "/pool/v",
                "CreatedAt": "2026-11-22T06:30:00.000000Z",
                "Status": {"repo": "v"},
            }
        },
    )
    assert call(client, "/VolumeDriver.List", {}) == (
        200,
        {
            "Volumes": [
                {"Name": "a", "Mountpoint": "/pool/a"},
                {"Name": "b", "Mountpoint": "", "CreatedAt": "2026-11-22T06:30:00.000000Z"},
            ]
        },
    )
    assert call(client, "/VolumeDriver.Remove", {"Name": "v"}) == (200, {})
    assert driver.calls == Counter(create=1, mount=1, path=1, unmount=1, get=1, list=1, remove=1)


def test_create_passes_options(client: FlaskClient, driver: CountingDriver) -> None:
    call(client, "/VolumeDriver.Create", {"Name": "v", "Opts": {"size": "1G"}})
    assert driver.last == ("v", {"size": "1G"})


def test_driver_errors_become_err(client: FlaskClient) -> None:
    status, body = call(client, "/VolumeDriver.Get", {"Name": "missing-x"})
    assert status == 500
    assert body == {"Err": "no volume missing-x"}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'"pfs/a"', "not an object"),
        (b"{}", "no Name"),
        (b'{"Name": 3}', "Name must be a string"),
        (b'{"Name": null}', "no Name"),
    ],
)
@pytest.mark.parametrize(
    "endpoint",
    ["/VolumeDriver.Create", "/VolumeDriver.Get", "/VolumeDriver.Remove", "/VolumeDriver.Path"],
)
def test_malformed_bodies_get_a_clear_err_and_reach_no_driver(
    client: FlaskClient, driver: CountingDriver, endpoint: str, raw: bytes, says: str
) -> None:
    status, body = call(client, endpoint, raw=raw)
    assert status == 400
    assert says in body["Err"]
    assert '{"Name": "pfs/photos@master"}' in body["Err"]
    assert not driver.calls


@pytest.mark.parametrize("raw", [b"", b"  \n"])
def test_an_empty_unmount_is_docker_retrying_and_is_reconciled(
    client: FlaskClient, driver: CountingDriver, raw: bytes
) -> None:
    """Docker's plugin client re-sends a consumed body when it retries after a connection
    error: the Unmount names nothing. It is answered {} (an error would only be logged by
    Docker) and handed to the driver to reconcile; a Mount without a body is refused."""
    assert call(client, "/VolumeDriver.Unmount", raw=raw) == (200, {})
    assert driver.calls == Counter({"unmount_unnamed": 1})
    status, reply = call(client, "/VolumeDriver.Mount", raw=raw)
    assert status == 400 and "no Name" in reply["Err"]
    assert call(client, "/VolumeDriver.Unmount", raw=b"{}")[0] == 400
    assert driver.calls == Counter({"unmount_unnamed": 1})


@pytest.mark.parametrize("body", [{"Name": "v"}, {"Name": "v", "ID": ""}, {"Name": "v", "ID": 7}])
@pytest.mark.parametrize("endpoint", ["/VolumeDriver.Mount", "/VolumeDriver.Unmount"])
def test_mount_needs_an_id(
    client: FlaskClient, driver: CountingDriver, endpoint: str, body: dict[str, Any]
) -> None:
    status, reply = call(client, endpoint, body)
    assert status == 400
    assert "non-empty string ID" in reply["Err"]
    assert not driver.calls


def test_bad_opts_are_refused(client: FlaskClient, driver: CountingDriver) -> None:
    status, body = call(client, "/VolumeDriver.Create", {"Name": "v", "Opts": ["x"]})
    assert status == 400 and "Opts must be an object" in body["Err"]
    assert not driver.calls


def test_every_endpoint_is_served(client: FlaskClient) -> None:
    for endpoint in ENDPOINTS:
        assert client.post(endpoint, data=b'{"Name": "v", "ID": "m"}').status_code == 200
    assert client.get("/VolumeDriver.List").status_code == 405


def test_a_driver_crash_still_answers_err(driver: CountingDriver) -> None:
    def boom() -> list[VolumeInfo]:
        raise RuntimeError("disk on fire")

    driver.list = boom  # type: ignore[method-assign]
    status, body = call(create_plugin_app(driver).test_client(), "/VolumeDriver.List", {})
    assert status == 500 and "disk on fire" in body["Err"]
