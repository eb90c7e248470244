"""Flask handlers for the volume-plugin protocol: each a few lines over the Driver."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from pfs_volume.errors import InvalidRequest, MalformedRequest, PfsError
from pfs_volume.request_limits import answers_errors_with
from pfs_volume.strict_json import loads, read_body
from plugin import protocol

if TYPE_CHECKING:
    from plugin.protocol import Driver, VolumeInfo

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any] | str]
"""A handler answers a JSON object, or one encoded already (List's, see ``EncodedList``)."""

EMPTY: dict[str, Any] = {}
"""The body of a request that came with none (compared by identity: Docker's retries)."""
CREATED_TIMES = 65536
"""How many volumes' creation times are kept formatted (``_created_at``)."""
BODY_HINT = 'expected a JSON object such as {"Name": "pfs/photos@master"}'


def create_plugin_app(driver: Driver, scope: str = "local") -> Flask:
    """Build the flask app that serves Docker's volume-plugin protocol for ``driver``."""
    app = Flask("pfs-plugin")
    answers_errors_with(app, error_body)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # A path or method the protocol lacks: Docker shows Err, not flask's HTML page.
        body = {"Err": f"{exc.name}: {exc.description}"}
        return Response(json.dumps(body), exc.code or 400, content_type=protocol.CONTENT_TYPE)

    def endpoint(path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            @wraps(handler)
            def view() -> Response:
                try:
                    body = handler(_body())
                    status = 200
                except MalformedRequest as exc:
                    log.info("%s refused: %s", path, exc)
                    body, status = {"Err": str(exc)}, exc.status
                except PfsError as exc:
                    log.info("%s failed: %s", path, exc)
                    body, status = {"Err": str(exc)}, 500
                except Exception as exc:  # the daemon must answer Docker, whatever happens
                    log.exception("%s crashed", path)
                    body, status = {"Err": f"internal error in pfs: {exc}"}, 500
                text = body if isinstance(body, str) else json.dumps(body)
                return Response(text, status, content_type=protocol.CONTENT_TYPE)

            app.add_url_rule(path, path, view, methods=["POST"])
            return handler

        return register

    @endpoint(protocol.ACTIVATE)
    def activate(_: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": protocol.IMPLEMENTS}

    @endpoint(protocol.CREATE)
    def create(body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("Opts")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise MalformedRequest(f"Opts must be an object of strings; {BODY_HINT}")
        driver.create(_name(body), options)
        return {}

    @endpoint(protocol.REMOVE)
    def remove(body: dict[str, Any]) -> dict[str, Any]:
        driver.remove(_name(body))
        return {}

    @endpoint(protocol.MOUNT)
    def mount(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": str(driver.mount(_name(body), _mount_id(body)))}

    @endpoint(protocol.UNMOUNT)
    def unmount(body: dict[str, Any]) -> dict[str, Any]:
        if body is EMPTY:
            driver.unmount_unnamed()
            return {}
        driver.unmount(_name(body), _mount_id(body))
        return {}

    @endpoint(protocol.PATH)
    def path(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": driver.path(_name(body))}

    @endpoint(protocol.GET)
    def get(body: dict[str, Any]) -> dict[str, Any]:
        return {"Volume": _volume(driver.get(_name(body)), with_status=True)}

    encoded_list = EncodedList()

    @endpoint(protocol.LIST)
    def list_(_: dict[str, Any]) -> str:
        return encoded_list.encode(driver.list())

    @endpoint(protocol.CAPABILITIES)
    def capabilities(_: dict[str, Any]) -> dict[str, Any]:
        return {"Capabilities": {"Scope": scope}}

    return app


def error_body(exc: PfsError) -> tuple[str, bytes]:
    """An error as Docker expects it, for an answer flask does not make: (content type,
    ``{"Err": "..."}``)."""
    return protocol.CONTENT_TYPE, json.dumps({"Err": str(exc)}).encode()


def _body() -> dict[str, Any]:
    """The request body as a JSON object, parsed strictly (``strict_json``); Docker sends
    no Content-Type, so it is parsed whatever the type says."""
    try:
        raw = read_body(request.stream, request.content_length, "the request body")
        body = loads(raw, "the request body") if raw.strip() else None
    except InvalidRequest as exc:
        raise MalformedRequest(f"{exc}; {BODY_HINT}", exc.status) from None
    if body is None:
        return EMPTY
    if not isinstance(body, dict):
        raise MalformedRequest(
            f"the request body is a JSON {type(body).__name__}, not an object; {BODY_HINT}"
        )
    return body


def _name(body: dict[str, Any]) -> str:
    name = body.get("Name")
    if name is None:
        raise MalformedRequest(f"the request has no Name; {BODY_HINT}")
    if not isinstance(name, str):
        raise MalformedRequest(f"Name must be a string, not {type(name).__name__}; {BODY_HINT}")
    return name


def _mount_id(body: dict[str, Any]) -> str:
    mount_id = body.get("ID")
    if not isinstance(mount_id, str) or not mount_id:
        raise MalformedRequest(
            'Mount and Unmount need a non-empty string ID, as in {"Name": "pfs/photos", '
            '"ID": "abc123"}'
        )
    return mount_id


@lru_cache(maxsize=CREATED_TIMES)
def _created_at(moment: datetime) -> str:
    """``rfc3339``, remembered: List formats every volume's time on every call, and
    ``strftime`` was a fifth of its time at 10,000 volumes."""
    # Imported here: the plugin socket answers before the metadata layer is imported
    # (``pfs_volume.daemon_sockets``), and volumes are listed only once pfs is ready.
    from pfs_volume.meta import rfc3339

    return rfc3339(moment)


class EncodedList:
    """List's answer as JSON, encoded once per volume: the driver answers with the same
    tuple while no volume changed, and after a write with a new tuple that shares every
    unchanged volume's ``VolumeInfo`` (``VolumeService.list``); encoding 10,000 volumes
    cost more than everything else such a List does. Each volume's JSON is kept by the
    identity of its ``VolumeInfo`` while the answer that holds it is kept (so no other
    object can have its id); an answer that is not a tuple is encoded whole."""

    def __init__(self) -> None:
        self._last: tuple[tuple[VolumeInfo, ...], list[str], str] | None = None

    def encode(self, volumes: Sequence[VolumeInfo]) -> str:
        """``{"Volumes": [...]}`` of ``volumes``, as JSON text (as ``json.dumps``)."""
        last = self._last
        if last is not None and last[0] is volumes:
            return last[2]
        known = (
            {id(info): part for info, part in zip(last[0], last[1], strict=True)} if last else {}
        )
        parts = [
            known.get(id(info)) or json.dumps(_volume(info, with_status=False)) for info in volumes
        ]
        text = '{"Volumes": [' + ", ".join(parts) + "]}"
        self._last = (volumes, parts, text) if isinstance(volumes, tuple) else None
        return text


def _volume(info: VolumeInfo, *, with_status: bool) -> dict[str, Any]:
    wire: dict[str, Any] = {"Name": info.name, "Mountpoint": info.mountpoint}
    if info.created is not None:
        wire["CreatedAt"] = _created_at(info.created)
    if with_status:
        wire["Status"] = dict(info.status)
    return wire
