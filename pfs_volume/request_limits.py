"""How much a request may send, per route: declared by each app next to its routes and
enforced by the transport while waitress reads the request, before a body is read whole.

waitress reads a whole request body (spooling it to a temp file) before the app sees a
byte of it, so a limit checked by the app comes too late to save anything. The app
declares instead: a view that takes more than ``DEFAULT_BODY`` bytes says so with
``accepts_body`` (file uploads, repo imports), and an app whose clients expect errors
in another form than the API's ``{"error": {"code", "message"}}`` names it
(``answers_errors_with``: the plugin's ``{"Err": ...}``). ``RoutePolicy`` looks both
up for the transport from the app's own url_map, so this is the one table of limits and
a new route cannot be missed: it gets the default.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from pfs_volume.errors import BodyTooLarge, PfsError
from pfs_volume.strict_json import MAX_BODY

DEFAULT_BODY = MAX_BODY
"""Bytes any route accepts unless it declares more: a JSON body (``strict_json``)."""
MAX_STREAMED_BODY = 64 * 1024**3
"""Bytes a route that streams data in (a file, an export file) accepts. waitress spools
a body to a temp file before the app reads it, so this also bounds the temp space one
request can take; no pool this daemon makes by default is larger."""

_LIMIT_ATTRIBUTE = "pfs_max_body"
_RENDER_KEY = "pfs.error_body"
_REFUSE_KEY = "pfs.body_refusal"

View = TypeVar("View", bound=Callable[..., object])
ErrorBody = Callable[[PfsError], tuple[str, bytes]]
"""An error as its app's clients expect it: (content type, body)."""


def accepts_body(up_to: int) -> Callable[[View], View]:
    """Declare that a view accepts a request body of at most ``up_to`` bytes (every
    other view accepts ``DEFAULT_BODY``). Put it below the route decorator.

    Args:
        up_to: the most bytes the body may have.
    Returns:
        A decorator that marks the view and returns it unchanged.
    """

    def mark(view: View) -> View:
        setattr(view, _LIMIT_ATTRIBUTE, up_to)
        return view

    return mark


def api_error_body(exc: PfsError) -> tuple[str, bytes]:
    """An error in the pfs API's form: (content type, ``{"error": {"code", "message"}}``),
    the default for an app that declares no other."""
    body = {"error": {"code": exc.code, "message": str(exc)}}
    return "application/json", json.dumps(body).encode()


def answers_errors_with(app: Flask, render: ErrorBody) -> None:
    """Declare how ``app``'s clients expect an error the transport answers for it (a
    body refused before the app saw it), when not as ``api_error_body``.

    Args:
        app: the app. render: turns an error into (content type, body).
    """
    app.extensions[_RENDER_KEY] = render


def refuses_bodies_with(app: Flask, error: Callable[[], PfsError]) -> None:
    """Declare that a body longer than its route accepts is refused with ``error()``
    (its own status), rather than as too long: the API of a starting daemon, whose
    routes accept no body, tells an upload at once that it is starting, before a byte
    of it is read (waitress would spool all of it first).

    Args:
        app: the app. error: the error to answer, made when a request is refused.
    """
    app.extensions[_REFUSE_KEY] = error


@dataclass(frozen=True)
class Refusal:
    """A request the transport answers itself: status, content type and body."""

    status: int
    content_type: str
    body: bytes


class RoutePolicy:
    """The body limits and the error form of one app, for its transport.

    Args:
        app: the app whose routes (and their ``accepts_body`` marks) are looked up.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._render: ErrorBody = app.extensions.get(_RENDER_KEY, api_error_body)

    def follow(self, app: Flask) -> None:
        """Look routes up in ``app`` from now on (it replaces the app being served)."""
        self.app = app
        self._render = app.extensions.get(_RENDER_KEY, api_error_body)

    def body_limit(self, method: str, path: str) -> tuple[int, str]:
        """The most bytes a request's body may have, and the route as errors name it.

        Args:
            method: the request's method. path: its path (as the WSGI PATH_INFO).
        Returns:
            (limit, "METHOD RULE"); ``DEFAULT_BODY`` for a path no route serves (the app
            answers it with its own 404 or 405).
        """
        try:
            rule, _ = self.app.url_map.bind("pfs").match(path, method, return_rule=True)
        except (HTTPException, RequestRedirect):
            return DEFAULT_BODY, f"{method} {path}"
        view = self.app.view_functions.get(rule.endpoint)
        return getattr(view, _LIMIT_ATTRIBUTE, DEFAULT_BODY), f"{method} {rule.rule}"

    def too_large(self, route: str, size: int | None, limit: int) -> Refusal:
        """The answer to a body longer than its route accepts.

        Args:
            route: as ``body_limit`` named it. size: the declared length, when the
                headers gave one (None: a chunked body that passed the limit).
            limit: the route's limit.
        """
        refuse = self.app.extensions.get(_REFUSE_KEY)
        if refuse is not None:
            return self.refusal(refuse())
        told = f"is {size} bytes long" if size is not None else f"is longer than {limit} bytes"
        return self.refusal(
            BodyTooLarge(
                f"the request body of {route} {told}; "
                f"at most {limit} bytes are accepted on this route"
            )
        )

    def refusal(self, error: PfsError, status: int | None = None) -> Refusal:
        """The answer to a request the transport refuses, in the app's error form.

        Args:
            error: what is wrong. status: the HTTP status, when not the error's own.
        """
        content_type, body = self._render(error)
        return Refusal(status or error.status, content_type, body)
