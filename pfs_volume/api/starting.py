"""The API of a daemon that is still starting: every route answers 503 with what it is
doing, so a client can tell "starting" from "not running" (a refused connection).

The socket listens at once rather than once ready: ``pfs --version``, scripts and health
checks read ``/v1/health`` (its ``version`` and its error) while the node recovers or
waits for etcd, and a CLI verb says why it cannot run yet instead of "no daemon".
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.typing import ResponseReturnValue

from pfs_volume import package_version
from pfs_volume.errors import Starting
from pfs_volume.request_limits import accepts_body, refuses_bodies_with


def create_starting_app(status: Callable[[], str]) -> Flask:
    """The app served on the API socket until the real one replaces it.

    Args:
        status: what the daemon is doing now ("pfs is starting: recovering ...").
    """
    app = Flask("pfs-api-starting")
    version = package_version()

    def error() -> dict[str, str]:
        return {"code": Starting.code, "message": status()}

    # No route takes a body: the transport answers a request that sends one (an upload,
    # a repo import: gigabytes) that the node is starting as soon as its headers are
    # in, rather than spooling all of it to a temp file first, only to refuse it then.
    refuses_bodies_with(app, lambda: Starting(status()))

    @app.get("/v1/health")
    @accepts_body(0)
    def health() -> ResponseReturnValue:
        return {"ok": False, "version": version, "error": error()}, Starting.status

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    @accepts_body(0)
    def anything(path: str) -> ResponseReturnValue:
        return {"error": error()}, Starting.status

    return app
