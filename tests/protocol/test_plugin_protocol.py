"""The Docker volume-plugin protocol over real services, in process and over the socket."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from pfs_volume.meta import SqliteStore
from tests.protocol.conftest import Transport


def post(http: Transport, endpoint: str, body: Any = None) -> tuple[int, Any]:
    """POST as Docker does: JSON, but no Content-Type."""
    status, reply, content_type = http.request(
        "POST", endpoint, b"" if body is None else json.dumps(body).encode()
    )
    assert content_type.startswith("application/vnd.docker.plugins.v1")
    return status, reply


def test_a_volume_lifecycle_as_docker_drives_it(plugin_http: Transport, store: SqliteStore) -> None:
    assert post(plugin_http, "/Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})
    assert post(plugin_http, "/VolumeDriver.Capabilities", {}) == (
        200,
        {"Capabilities": {"Scope": "local"}},
    )
    assert post(plugin_http, "/VolumeDriver.Create", {"Name": "pfs/photos", "Opts": {}}) == (
        200,
        {},
    )
    # Docker may call Create again for a volume that exists.
    assert post(plugin_http, "/VolumeDriver.Create", {"Name": "pfs/photos"}) == (200, {})
    status, got = post(plugin_http, "/VolumeDriver.Get", {"Name": "pfs/photos"})
    assert status == 200
    assert got["Volume"]["Status"]["repo"] == "photos"
    assert got["Volume"]["Status"]["writable"] is True
    status, mounted = post(plugin_http, "/VolumeDriver.Mount", {"Name": "pfs/photos", "ID": "c1"})
    path = Path(mounted["Mountpoint"])
    assert status == 200 and path.is_dir()
    assert post(plugin_http, "/VolumeDriver.Path", {"Name": "pfs/photos"}) == (
        200,
        {"Mountpoint": str(path)},
    )
    (path / "a").write_text("hi")
    assert post(plugin_http, "/VolumeDriver.Unmount", {"Name": "pfs/photos", "ID": "c1"}) == (
        200,
        {},
    )
    assert store.count_commits("photos") == 1
    status, listed = post(plugin_http, "/VolumeDriver.List", {})
    assert [v["Name"] for v in listed["Volumes"]] == ["pfs/photos"]
    assert post(plugin_http, "/VolumeDriver.Remove", {"Name": "pfs/photos"}) == (200, {})
    assert post(plugin_http, "/VolumeDriver.List", {}) == (200, {"Volumes": []})
    assert store.count_commits("photos") == 1


def test_errors_come_back_as_err(plugin_http: Transport, store: SqliteStore) -> None:
    for endpoint, body, says in [
        ("/VolumeDriver.Create", {"Name": "pfs/../x"}, "must start with a letter or digit"),
        ("/VolumeDriver.Mount", {"Name": "pfs/a@", "ID": "x"}, "nothing follows '@'"),
        ("/VolumeDriver.Get", {"Name": "elsewhere"}, "no pfs volume"),
        ("/VolumeDriver.Create", {"Name": "pfs/a", "Opts": {"o": "1"}}, "take no options"),
    ]:
        status, reply = post(plugin_http, endpoint, body)
        assert status == 500 and says in reply["Err"], reply
    status, reply, _ = plugin_http.request("POST", "/VolumeDriver.Create", b"{not json")
    assert status == 400 and "not valid JSON" in reply["Err"]
    assert store.list_repos() == [] and store.list_volumes() == []


def test_socket_is_for_root_or_the_docker_group(tmp_path: Path) -> None:
    from flask import Flask

    from pfs_volume.transport import UnixSocketServer, socket_in_use

    server = UnixSocketServer(Flask("x"), tmp_path / "s.sock", "test")
    server.start()
    try:
        mode = os.stat(server.path)
        assert stat.S_ISSOCK(mode.st_mode)
        assert mode.st_mode & 0o007 == 0, "no access for others"
        assert socket_in_use(server.path)
    finally:
        server.stop()
    assert not server.path.exists()
    assert not socket_in_use(server.path)
