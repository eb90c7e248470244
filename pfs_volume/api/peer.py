"""The node API other nodes call: commit streams and fetch requests.

Served on the node's advertised TCP address, apart from the local API's unix socket.
Every request must carry the cluster token (``Authorization: Bearer TOKEN``); anything
else is refused with 401 before it reaches a service.
"""

from __future__ import annotations

import hmac
import re

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

from pfs_volume.api.app import install_error_handlers, json_body
from pfs_volume.cluster.replication import Replicator
from pfs_volume.errors import InvalidName, Unauthorized
from pfs_volume.names import check_component

COMMIT_ID = re.compile(r"[0-9a-f]{32}")


def create_peer_app(replicator: Replicator, token: str) -> Flask:
    """Build the flask app of the node API for peers.

    Args:
        replicator: this node's replication service.
        token: the cluster token peers must present.
    """
    app = Flask("pfs-peer")
    install_error_handlers(app)
    expected = f"Bearer {token}".encode()

    @app.before_request
    def check_token() -> None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized(
                "this is a pfs node API for peers: it needs the cluster token "
                "(Authorization: Bearer TOKEN, as given to pfs serve --cluster-token)"
            )

    @app.url_value_preprocessor
    def check_names(_endpoint: str | None, values: dict[str, str] | None) -> None:
        if values:
            check_component(values["repo"], "repo")
            _check_commit_id(values["commit"])

    @app.get("/v1/peer/repos/<repo>/commits/<commit>/stream")
    def stream_commit(repo: str, commit: str) -> ResponseReturnValue:
        parent = request.args.get("parent")
        if parent is not None:
            _check_commit_id(parent)
        chunks = replicator.send(repo, commit, parent)
        return Response(chunks, mimetype="application/octet-stream")

    @app.post("/v1/peer/repos/<repo>/commits/<commit>/fetch")
    def fetch_commit(repo: str, commit: str) -> ResponseReturnValue:
        body = json_body({"from": str})
        return {"holders": replicator.fetch(repo, commit, source=body["from"])}

    return app


def _check_commit_id(value: str) -> str:
    if not COMMIT_ID.fullmatch(value):
        raise InvalidName(f"{value!r} is not a commit id (32 lowercase hex digits)")
    return value
